//! Reporting back to the cluster: Ingress status addresses and warning Events, written
//! only by the elected leader.
//!
//! Fed by the rebuild loop through a `watch` channel holding the latest snapshot, the
//! set of served Ingresses and translation's warnings; never affects routing. Each
//! distinct warning becomes one Event while it persists (kube's recorder folds repeats
//! into an Event series), so a steady state does not spam the API server.

pub mod leader;
pub mod plan;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::translate::Snapshot;
use crate::translate::{ObjKind, Warning};

pub use leader::ElectionConfig;
pub use plan::AddressSource;

/// What the status writer needs from one rebuild.
#[derive(Debug, Default)]
pub struct StatusInput {
    pub snapshot: Snapshot,
    /// (namespace, name) of every Ingress the table serves.
    pub served: HashSet<(String, String)>,
    pub warnings: Vec<Warning>,
}

#[derive(Debug, Clone)]
pub struct StatusConfig {
    pub address: AddressSource,
    pub election: ElectionConfig,
}

/// Resync period: status drift (someone else edited it) is corrected at least this often.
const RESYNC: Duration = Duration::from_secs(30);

/// Runs the election and, while leading, keeps statuses and Events up to date.
pub async fn run(
    client: Client,
    config: StatusConfig,
    mut input: watch::Receiver<Option<Arc<StatusInput>>>,
    leading_tx: watch::Sender<bool>,
) {
    let mut leading = leading_tx.subscribe();
    tokio::spawn(leader::run(
        client.clone(),
        config.election.clone(),
        leading_tx,
    ));
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "sluice".into(),
            instance: Some(config.election.identity.clone()),
        },
    );
    let mut emitted: HashSet<Warning> = HashSet::new();
    let mut resync = tokio::time::interval(RESYNC);
    loop {
        tokio::select! {
            r = input.changed() => if r.is_err() { return },
            r = leading.changed() => if r.is_err() { return },
            _ = resync.tick() => {}
        }
        if !*leading.borrow() {
            // A new leader re-announces everything it finds.
            emitted.clear();
            continue;
        }
        let Some(current) = input.borrow().clone() else {
            continue;
        };
        write_statuses(&client, &config, &current).await;
        for w in &current.warnings {
            if emitted.contains(w) {
                continue;
            }
            match publish_event(&recorder, &current.snapshot, w).await {
                Ok(()) => {
                    emitted.insert(w.clone());
                }
                Err(e) => warn!(error = %e, warning = %w, "cannot publish Event"),
            }
        }
        emitted.retain(|w| current.warnings.contains(w));
    }
}

async fn write_statuses(client: &Client, config: &StatusConfig, input: &StatusInput) {
    let Some(desired) = plan::desired_addresses(&input.snapshot, &config.address) else {
        return;
    };
    for u in plan::updates(&input.snapshot, &input.served, &desired) {
        let api: Api<Ingress> = Api::namespaced(client.clone(), &u.namespace);
        let patch = serde_json::json!({"status": {"loadBalancer": {"ingress": u.addresses}}});
        match api
            .patch_status(&u.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                info!(namespace = %u.namespace, name = %u.name, addresses = ?u.addresses.iter().map(|a| a.ip.clone().or(a.hostname.clone()).unwrap_or_default()).collect::<Vec<_>>(), "updated Ingress status")
            }
            Err(e) => {
                warn!(namespace = %u.namespace, name = %u.name, error = %e, "cannot update Ingress status")
            }
        }
    }
}

/// The object a warning is about, as an Event's `regarding`.
fn reference(snapshot: &Snapshot, w: &Warning) -> ObjectReference {
    fn uid<K: kube::Resource>(items: &[Arc<K>], ns: &str, name: &str) -> Option<String> {
        items
            .iter()
            .find(|o| {
                let m = o.meta();
                m.name.as_deref() == Some(name) && m.namespace.as_deref().unwrap_or("") == ns
            })
            .and_then(|o| o.meta().uid.clone())
    }
    let (api_version, uid) = match w.kind {
        ObjKind::Ingress => (
            "networking.k8s.io/v1",
            uid(&snapshot.ingresses, &w.namespace, &w.name),
        ),
        ObjKind::IngressClass => (
            "networking.k8s.io/v1",
            uid(&snapshot.ingress_classes, "", &w.name),
        ),
        ObjKind::Service => ("v1", uid(&snapshot.services, &w.namespace, &w.name)),
        ObjKind::EndpointSlice => (
            "discovery.k8s.io/v1",
            uid(&snapshot.endpoint_slices, &w.namespace, &w.name),
        ),
        ObjKind::Secret => ("v1", uid(&snapshot.secrets, &w.namespace, &w.name)),
        ObjKind::ConfigMap => ("v1", uid(&snapshot.config_maps, &w.namespace, &w.name)),
    };
    ObjectReference {
        api_version: Some(api_version.into()),
        kind: Some(w.kind.to_string()),
        name: Some(w.name.clone()),
        namespace: (!w.namespace.is_empty()).then(|| w.namespace.clone()),
        uid,
        ..Default::default()
    }
}

async fn publish_event(
    recorder: &Recorder,
    snapshot: &Snapshot,
    w: &Warning,
) -> Result<(), kube::Error> {
    debug!(warning = %w, "publishing Event");
    // Event notes are limited to 1 KiB by the API server.
    let mut note = w.message.clone();
    if note.len() > 1000 {
        let mut cut = 1000;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
    }
    recorder
        .publish(
            &Event {
                type_: EventType::Warning,
                reason: w.reason.to_string(),
                note: Some(note),
                action: "Translate".into(),
                secondary: None,
            },
            &reference(snapshot, w),
        )
        .await
}
