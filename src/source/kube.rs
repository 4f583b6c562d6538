//! Controller mode: the API server as the object source.
//!
//! Owns one kube-runtime reflector per watched kind (and per namespace with
//! `--watch-namespace`): Ingress, IngressClass, Service, EndpointSlice, Secret and the
//! `--configmap` ConfigMap, plus the ConfigMaps its `proxy-set-headers` and
//! `add-headers` name (each watched by name, started and stopped as the controller
//! ConfigMap changes; RBAC needs nothing beyond list/watch of ConfigMaps). Secrets are filtered by field selector (Helm release,
//! service-account token and registry Secrets are never read: annotations cannot use
//! them); `proxy-ssl-secret` and `auth-secret` point at Opaque Secrets, so those are
//! watched. Cached objects are trimmed (managedFields, last-applied annotations; TLS
//! Secrets keep only certificate, key and CA; other Secrets drop values over 64 KiB,
//! which no annotation reads) so memory follows what translation reads.
//!
//! Nothing is published until every reflector has finished its initial list; after
//! that any change triggers a debounced rebuild. A failing watch backs off and
//! re-lists; the reflector swaps its store only when the new list is complete, so the
//! last table keeps serving meanwhile.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tracing::{info, warn};

use super::SnapshotSink;
use crate::config::ObjectRef;
use crate::translate::{referenced_config_maps, Snapshot};

/// What to watch.
#[derive(Debug, Clone, Default)]
pub struct WatchConfig {
    /// Empty: all namespaces.
    pub namespaces: Vec<String>,
    pub configmap: Option<ObjectRef>,
    /// `--publish-service`: watched too when outside the watched namespaces.
    pub publish_service: Option<ObjectRef>,
}

/// Secrets that no annotation can use, left out of the watch (they are also the big ones).
const SECRET_TYPES: &str = "type!=helm.sh/release.v1,type!=kubernetes.io/service-account-token,type!=kubernetes.io/dockerconfigjson,type!=kubernetes.io/dockercfg";

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

fn trim_meta<K: ResourceExt>(obj: &mut K) {
    obj.managed_fields_mut().clear();
    obj.annotations_mut().remove(LAST_APPLIED);
}

fn trim_secret(s: &mut Secret) {
    trim_meta(s);
    let tls = s.type_.as_deref() == Some("kubernetes.io/tls");
    if let Some(data) = s.data.as_mut() {
        data.retain(|k, v| {
            if tls {
                k == "tls.crt" || k == "tls.key" || k == "ca.crt"
            } else {
                v.0.len() <= 64 * 1024
            }
        });
    }
    s.string_data = None;
}

/// The reflector stores of every watched kind.
pub struct Stores {
    ingresses: Vec<Store<Ingress>>,
    ingress_classes: Vec<Store<IngressClass>>,
    services: Vec<Store<Service>>,
    endpoint_slices: Vec<Store<EndpointSlice>>,
    secrets: Vec<Store<Secret>>,
    config_maps: Vec<Store<ConfigMap>>,
    /// ConfigMaps named by the controller ConfigMap (`proxy-set-headers`, `add-headers`).
    referenced: HashMap<ObjectRef, (Store<ConfigMap>, tokio::task::AbortHandle)>,
    client: Client,
    changed: Arc<Notify>,
}

impl Stores {
    /// Starts every reflector; `changed` is notified on each change after its first list.
    pub fn start(client: &Client, config: &WatchConfig, changed: Arc<Notify>) -> Stores {
        let apis = |ns: &[String]| -> Vec<Option<String>> {
            if ns.is_empty() {
                vec![None]
            } else {
                ns.iter().cloned().map(Some).collect()
            }
        };
        let scopes = apis(&config.namespaces);
        macro_rules! per_scope {
            ($k:ty, $wc:expr, $trim:expr) => {
                scopes
                    .iter()
                    .map(|ns| {
                        let api: Api<$k> = match ns {
                            Some(ns) => Api::namespaced(client.clone(), ns),
                            None => Api::all(client.clone()),
                        };
                        reflect(api, $wc, $trim, changed.clone())
                    })
                    .collect::<Vec<_>>()
            };
        }
        let secrets = watcher::Config::default().fields(SECRET_TYPES);
        let config_maps = match &config.configmap {
            Some(cm) => vec![reflect(
                Api::<ConfigMap>::namespaced(client.clone(), &cm.namespace),
                watcher::Config::default().fields(&format!("metadata.name={}", cm.name)),
                trim_meta,
                changed.clone(),
            )],
            None => Vec::new(),
        };
        let mut services = per_scope!(Service, watcher::Config::default(), trim_meta);
        if let Some(ps) = &config.publish_service {
            if !config.namespaces.is_empty() && !config.namespaces.contains(&ps.namespace) {
                services.push(reflect(
                    Api::<Service>::namespaced(client.clone(), &ps.namespace),
                    watcher::Config::default().fields(&format!("metadata.name={}", ps.name)),
                    trim_meta,
                    changed.clone(),
                ));
            }
        }
        Stores {
            ingresses: per_scope!(Ingress, watcher::Config::default(), trim_meta),
            ingress_classes: vec![reflect(
                Api::<IngressClass>::all(client.clone()),
                watcher::Config::default(),
                trim_meta,
                changed.clone(),
            )],
            services,
            endpoint_slices: per_scope!(EndpointSlice, watcher::Config::default(), trim_meta),
            secrets: per_scope!(Secret, secrets.clone(), trim_secret),
            config_maps,
            referenced: HashMap::new(),
            client: client.clone(),
            changed,
        }
    }

    /// Starts watching the ConfigMaps the controller ConfigMap names now and stops
    /// watching those it no longer names. Returns whether any watch was started.
    pub fn sync_referenced(&mut self) -> bool {
        let wanted: Vec<ObjectRef> = self
            .config_maps
            .iter()
            .flat_map(|s| s.state())
            .flat_map(|cm| referenced_config_maps(&cm))
            .collect();
        self.referenced.retain(|name, (_, task)| {
            let keep = wanted.contains(name);
            if !keep {
                task.abort();
            }
            keep
        });
        let mut started = false;
        for name in wanted {
            if self.referenced.contains_key(&name) {
                continue;
            }
            let (store, task) = reflect_with_handle(
                Api::<ConfigMap>::namespaced(self.client.clone(), &name.namespace),
                watcher::Config::default().fields(&format!("metadata.name={}", name.name)),
                trim_meta,
                self.changed.clone(),
            );
            info!(configmap = %name, "watching a ConfigMap named by the controller ConfigMap");
            self.referenced.insert(name, (store, task));
            started = true;
        }
        started
    }

    /// Waits until every reflector has completed its initial list.
    pub async fn wait_until_ready(&self) {
        macro_rules! wait_all {
            ($($stores:expr),*) => {
                $(for s in &$stores {
                    let _ = s.wait_until_ready().await;
                })*
            };
        }
        wait_all!(
            self.ingresses,
            self.ingress_classes,
            self.services,
            self.endpoint_slices,
            self.secrets,
            self.config_maps
        );
    }

    /// Waits until the named ConfigMaps' watches have listed.
    async fn wait_referenced(&self) {
        for (s, _) in self.referenced.values() {
            let _ = s.wait_until_ready().await;
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        fn all<K: Resource + Clone>(stores: &[Store<K>]) -> Vec<Arc<K>>
        where
            K::DynamicType: Eq + Hash + Clone,
        {
            stores.iter().flat_map(|s| s.state()).collect()
        }
        Snapshot {
            ingresses: all(&self.ingresses),
            ingress_classes: all(&self.ingress_classes),
            services: all(&self.services),
            endpoint_slices: all(&self.endpoint_slices),
            secrets: all(&self.secrets),
            config_maps: all(&self.config_maps)
                .into_iter()
                .chain(self.referenced.values().flat_map(|(s, _)| s.state()))
                .collect(),
            observed_at: super::now_secs(),
        }
    }
}

/// One reflector: a store kept in sync by a watch, and a task driving it.
fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
    trim: fn(&mut K),
    changed: Arc<Notify>,
) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    reflect_with_handle(api, config, trim, changed).0
}

/// [`reflect`], with a handle that stops the watch.
fn reflect_with_handle<K>(
    api: Api<K>,
    config: watcher::Config,
    trim: fn(&mut K),
    changed: Arc<Notify>,
) -> (Store<K>, tokio::task::AbortHandle)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let kind = K::kind(&K::DynamicType::default()).to_string();
    let (reader, writer) = reflector::store();
    let stream = watcher::watcher(api, config)
        .backoff(RetryBackoff::default())
        .modify(trim)
        .reflect(writer);
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        let mut listed = false;
        while let Some(event) = stream.next().await {
            match event {
                Ok(Event::InitDone) => {
                    if !listed {
                        info!(%kind, "initial list complete");
                    }
                    listed = true;
                    changed.notify_one();
                }
                Ok(Event::Apply(_) | Event::Delete(_)) => changed.notify_one(),
                Ok(Event::Init | Event::InitApply(_)) => {}
                Err(e) => {
                    warn!(%kind, error = %e, "watch failed; re-listing with backoff, serving the last table")
                }
            }
        }
    });
    (reader, task.abort_handle())
}

/// Re-list backoff after a watch error: exponential from 250 ms, capped at 4 s, with
/// jitter. kube's default caps at 30 s, which after an API server outage of half a
/// minute left sluice up to 30 s behind once the server was back; an ingress
/// controller should catch up within seconds, and re-listing a few kinds is cheap.
#[derive(Debug, Clone)]
struct RetryBackoff {
    next: Duration,
}

const RETRY_MIN: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(4);

impl Default for RetryBackoff {
    fn default() -> Self {
        RetryBackoff { next: RETRY_MIN }
    }
}

impl Iterator for RetryBackoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        let base = self.next;
        self.next = (self.next * 2).min(RETRY_MAX);
        // Up to 50% jitter so replicas do not re-list in lockstep.
        Some(base + base.mul_f64(fastrand::f64() * 0.5))
    }
}

impl kube::runtime::utils::Backoff for RetryBackoff {
    fn reset(&mut self) {
        self.next = RETRY_MIN;
    }
}

/// How long the first table waits for the ConfigMaps the controller ConfigMap names.
const REFERENCED_WAIT: Duration = Duration::from_secs(10);

/// How long the watch must be quiet before a rebuild, and the longest a burst of
/// changes can delay one.
const DEBOUNCE_QUIET: Duration = Duration::from_millis(20);
const DEBOUNCE_MAX: Duration = Duration::from_millis(100);

/// Runs controller mode until the runtime stops: first table after every initial list,
/// then a snapshot per (debounced) change, handed to `sink`. Ends if the receiver goes.
pub async fn run(mut stores: Stores, changed: Arc<Notify>, sink: SnapshotSink) {
    stores.wait_until_ready().await;
    // The ConfigMaps the controller ConfigMap names, listed before the first table too.
    // Bounded: a ConfigMap that cannot be listed (RBAC, a typo'd namespace) must not
    // hold the first table back; it is applied when it arrives.
    if stores.sync_referenced()
        && tokio::time::timeout(REFERENCED_WAIT, stores.wait_referenced())
            .await
            .is_err()
    {
        warn!("ConfigMaps named by proxy-set-headers/add-headers not listed within 10 s; starting without them");
    }
    info!("every watched kind listed; publishing the first table");
    // The initial lists left a notification behind; the snapshot taken next already
    // contains what it announced (reflectors update their store before the event is
    // seen), so drop it rather than rebuild the same table twice.
    let _ = tokio::time::timeout(Duration::ZERO, changed.notified()).await;
    if sink.send(stores.snapshot()).is_err() {
        return;
    }
    loop {
        super::debounced(&changed, DEBOUNCE_QUIET, DEBOUNCE_MAX).await;
        // A newly named ConfigMap announces its first list through `changed` too.
        stores.sync_referenced();
        if sink.send(stores.snapshot()).is_err() {
            return;
        }
    }
}
