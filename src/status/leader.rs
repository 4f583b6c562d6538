//! Leader election on a `coordination.k8s.io/v1` Lease (`--election-id`), the same
//! protocol client-go uses: the holder renews `renewTime` every [`RETRY`]; anyone may
//! take the Lease once it has not been renewed for `leaseDurationSeconds`. Every write
//! carries the Lease's resourceVersion, so two replicas can never both win a round.
//! Only the leader writes Ingress status and Events.
//!
//! Written here because kube-rs has no leader election (`kube-runtime` 5 offers none),
//! and the crates that add one (`kube-leader-election`, `kube-lease-manager`) are
//! small third-party wrappers of the same get/replace loop, each pinned to kube
//! versions of its own: this one is some 100 lines on kube's `Api<Lease>`, with
//! client-go's timing.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::watch;
use tracing::{info, warn};

/// How often the Lease is renewed or tried.
pub const RETRY: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct ElectionConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's identity (Pod name, else host name and pid).
    pub identity: String,
    pub lease_duration: Duration,
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// Runs the election forever, publishing whether this replica leads.
pub async fn run(client: Client, config: ElectionConfig, leading: watch::Sender<bool>) {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    loop {
        let lead = match try_acquire_or_renew(&api, &config).await {
            Ok(lead) => lead,
            Err(e) => {
                warn!(lease = %config.name, error = %e, "leader election round failed");
                false
            }
        };
        crate::metrics::global().set_leader(&config.name, lead);
        if *leading.borrow() != lead {
            info!(identity = %config.identity, lease = %config.name, leading = lead, "leadership changed");
            let _ = leading.send(lead);
        }
        tokio::time::sleep(RETRY).await;
    }
}

async fn try_acquire_or_renew(api: &Api<Lease>, c: &ElectionConfig) -> Result<bool, kube::Error> {
    let secs = i32::try_from(c.lease_duration.as_secs()).unwrap_or(15);
    let Some(mut lease) = api.get_opt(&c.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(c.name.clone()),
                namespace: Some(c.namespace.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(c.identity.clone()),
                lease_duration_seconds: Some(secs),
                acquire_time: Some(now()),
                renew_time: Some(now()),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let mine = holder == c.identity;
    let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(secs).max(1) as u64);
    let expired = spec.renew_time.as_ref().is_none_or(|t| {
        let age = k8s_openapi::jiff::Timestamp::now().duration_since(t.0);
        age.as_secs() >= duration.as_secs() as i64
    });
    if !mine && !holder.is_empty() && !expired {
        return Ok(false);
    }
    if !mine {
        spec.holder_identity = Some(c.identity.clone());
        spec.acquire_time = Some(now());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.renew_time = Some(now());
    spec.lease_duration_seconds = Some(secs);
    match api.replace(&c.name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        // Someone else wrote first: they lead this round.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Gives the Lease up (on shutdown) so another replica takes over at once.
pub async fn release(client: Client, c: &ElectionConfig) {
    let api: Api<Lease> = Api::namespaced(client, &c.namespace);
    if let Ok(Some(mut lease)) = api.get_opt(&c.name).await {
        if let Some(spec) = lease.spec.as_mut() {
            if spec.holder_identity.as_deref() == Some(c.identity.as_str()) {
                spec.holder_identity = None;
                let _ = api.replace(&c.name, &PostParams::default(), &lease).await;
            }
        }
    }
}
