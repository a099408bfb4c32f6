//! The platform trust as the trust controller last loaded it, published on a watch channel.
//!
//! The trust controller is the one reader of the platform CA's Secret and the one writer of the
//! trust state: after each pass it publishes what it found ([`TrustPublisher::publish`]), and the
//! tenant and service controllers issue with that ([`TrustSubscriber::current`]) instead of each
//! reconcile reading the Secret and parsing the CA's key again. A change of what is published (a
//! rotation step, the CA becoming usable or unusable) wakes every tenant and service
//! ([`TrustSubscriber::changes`]); a publication equal to the previous one wakes nobody.

use std::sync::Arc;

use futures::Stream;
use govpaas_crds::conditions::reasons;
use tokio::sync::watch;

use super::trust_store::PlatformTrust;
use crate::reconcile::outcome::{Step, Stop};

/// What was published: the trust to issue with, or why the platform CA cannot be used.
pub type Published = Result<Arc<PlatformTrust>, String>;

/// The trust controller's end of the channel.
pub struct TrustPublisher(watch::Sender<Option<Published>>);

/// The end the tenant and service controllers read. Cloned freely.
#[derive(Clone)]
pub struct TrustSubscriber(watch::Receiver<Option<Published>>);

/// A channel with nothing published yet.
pub fn channel() -> (TrustPublisher, TrustSubscriber) {
    let (sender, receiver) = watch::channel(None);
    (TrustPublisher(sender), TrustSubscriber(receiver))
}

/// Whether two publications would issue and hand out the same thing.
fn same(a: &Published, b: &Published) -> bool {
    match (a, b) {
        (Ok(a), Ok(b)) => {
            a.issuing.fingerprint() == b.issuing.fingerprint()
                && a.retiring.as_ref().map(|ca| &ca.fingerprint) == b.retiring.as_ref().map(|ca| &ca.fingerprint)
                && a.bundle_pem == b.bundle_pem
        }
        (Err(a), Err(b)) => a == b,
        _ => false,
    }
}

impl TrustPublisher {
    /// Publishes `found`; subscribers are woken only when it differs from what they hold.
    pub fn publish(&self, found: Published) {
        self.0.send_if_modified(|current| {
            if current.as_ref().is_some_and(|current| same(current, &found)) {
                return false;
            }
            *current = Some(found);
            true
        });
    }

    /// Publishes that there is no Platform (so nothing can be issued), unless something was
    /// published already: a Platform reconciled since wins.
    pub fn publish_absent(&self, message: String) {
        self.0.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            *current = Some(Err(message));
            true
        });
    }
}

impl TrustSubscriber {
    /// The platform trust to issue with, or the reason to wait (`PlatformCaNotReady`).
    pub fn current(&self) -> Step<Arc<PlatformTrust>> {
        match &*self.0.borrow() {
            Some(Ok(trust)) => Ok(trust.clone()),
            Some(Err(message)) => Err(Stop::waiting(reasons::PLATFORM_CA_NOT_READY, message.clone())),
            None => Err(Stop::waiting(
                reasons::PLATFORM_CA_NOT_READY,
                "the platform trust controller has not loaded the platform CA yet",
            )),
        }
    }

    /// Resolves once the trust controller has published something (a usable trust, or why there
    /// is none): before that, a reconcile would report a CA that is only not loaded yet. False if
    /// the trust controller stopped first.
    pub async fn settled(&self) -> bool {
        let mut receiver = self.0.clone();
        receiver.wait_for(Option::is_some).await.is_ok()
    }

    /// One item for each change of what is published (not for the value already there), in the
    /// form the trigger tasks take; it ends when the trust controller stops.
    pub fn changes(&self) -> impl Stream<Item = Result<(), kube::runtime::watcher::Error>> + Send + 'static {
        let mut receiver = self.0.clone();
        receiver.mark_unchanged();
        futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.changed().await.ok()?;
            receiver.mark_unchanged();
            Some((Ok(()), receiver))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use govpaas_pki::{IssuancePolicy, PlatformCaRequest, TrustAnchors, generate_platform_ca};

    fn trust() -> Arc<PlatformTrust> {
        let now = time::OffsetDateTime::now_utc();
        let issuing =
            generate_platform_ca(&PlatformCaRequest::new("danang.gov.vn", "govpaas"), &IssuancePolicy::default(), now)
                .unwrap();
        let bundle_pem = issuing.certificate_pem().to_owned();
        let anchors = TrustAnchors::from_pem(bundle_pem.as_bytes()).unwrap();
        Arc::new(PlatformTrust { issuing, retiring: None, bundle_pem, anchors })
    }

    fn reason(step: Step<Arc<PlatformTrust>>) -> String {
        match step {
            Err(Stop::Halt(crate::reconcile::outcome::Halt::Waiting(problem))) => {
                format!("{}: {}", problem.reason, problem.message)
            }
            other => panic!("expected a wait, got {:?}", other.map(|_| ())),
        }
    }

    #[tokio::test]
    async fn subscribers_wait_until_the_first_publication_and_then_issue_with_it() {
        let (publisher, subscriber) = channel();
        assert!(reason(subscriber.current()).starts_with("PlatformCaNotReady: the platform trust controller"));
        let waiting = tokio::spawn({
            let subscriber = subscriber.clone();
            async move { subscriber.settled().await }
        });
        let published = trust();
        publisher.publish(Ok(published.clone()));
        assert!(waiting.await.unwrap());
        let current = subscriber.current().unwrap();
        assert_eq!(current.issuing.fingerprint(), published.issuing.fingerprint());
    }

    #[tokio::test]
    async fn only_a_change_of_what_is_issued_wakes_the_subscribers() {
        let (publisher, subscriber) = channel();
        let first = trust();
        publisher.publish(Ok(first.clone()));
        let mut changes = Box::pin(subscriber.changes());
        // The same trust again (an hourly resync), parsed anew: nobody wakes.
        let reparsed = Arc::new(PlatformTrust {
            issuing: govpaas_pki::CertificateAuthority::import_platform_ca(
                first.issuing.certificate_pem().as_bytes(),
                first.issuing.private_key_pem().expose().as_bytes(),
                time::OffsetDateTime::now_utc(),
            )
            .unwrap(),
            retiring: None,
            bundle_pem: first.bundle_pem.clone(),
            anchors: first.anchors.clone(),
        });
        publisher.publish(Ok(reparsed));
        let quiet = tokio::time::timeout(std::time::Duration::from_millis(50), changes.next()).await;
        assert!(quiet.is_err(), "an unchanged publication woke a subscriber");
        // The CA becoming unusable does, and its message is what subscribers report.
        publisher.publish(Err("the platform CA Secret govpaas-ca is gone".into()));
        assert!(changes.next().await.is_some());
        assert_eq!(reason(subscriber.current()), "PlatformCaNotReady: the platform CA Secret govpaas-ca is gone");
        // A new CA does.
        publisher.publish(Ok(trust()));
        assert!(changes.next().await.is_some());
    }

    #[tokio::test]
    async fn no_platform_is_published_only_before_anything_else() {
        let (publisher, subscriber) = channel();
        publisher.publish(Ok(trust()));
        publisher.publish_absent("there is no Platform".into());
        assert!(subscriber.current().is_ok(), "a reconciled Platform's trust stays");

        let (publisher, subscriber) = channel();
        publisher.publish_absent("there is no Platform".into());
        assert!(subscriber.settled().await);
        assert_eq!(reason(subscriber.current()), "PlatformCaNotReady: there is no Platform");
    }

    #[tokio::test]
    async fn the_change_stream_ends_with_the_trust_controller() {
        let (publisher, subscriber) = channel();
        let mut changes = Box::pin(subscriber.changes());
        drop(publisher);
        assert!(changes.next().await.is_none());
        assert!(!subscriber.settled().await);
    }
}
