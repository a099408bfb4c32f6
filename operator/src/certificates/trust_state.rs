//! What the platform trusts, as persisted in the ConfigMap `govpaas-trust` of the operator's
//! namespace, and the pure decision of what a rotation does next.
//!
//! The persisted state is the library's [`TrustRotation`] plus the Secret that holds each CA's
//! key. It is what every controller reads to know which CA issues and which bundle to hand out,
//! so a rotation survives restarts and fail-overs and is shared by every operator process.
//!
//! The platform engineer starts a rotation by pointing `Platform spec.ca.secretName` at a Secret
//! holding another CA (in `Generate` mode the operator generates it there), aborts it by pointing
//! back before re-issuing starts, and otherwise just waits: [`decide`] turns what the operator
//! observed into the next state.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use govpaas_pki::{BundleCa, Progress, TrustRotation};

/// The persisted trust state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrustState {
    /// The bundle and where a rotation stands.
    pub rotation: TrustRotation,
    /// The Secret (operator's namespace) holding each trusted CA, by fingerprint.
    pub secrets: BTreeMap<String, String>,
}

/// The CA that `Platform spec.ca.secretName` holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredCa {
    pub ca: BundleCa,
    pub secret_name: String,
}

/// What the controller counted across the cluster during a rotation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Census {
    /// Trust bundle ConfigMaps and certificate Secrets whose bundle is not the current one.
    pub bundles_pending: usize,
    /// Tenant CAs and leaves, by the CA they chain to.
    pub progress: Progress,
    /// Some of what is still waited for, for status.
    pub waiting_for: Vec<String>,
}

/// Why the requested CA is not acted upon: a condition reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub reason: &'static str,
    pub message: String,
}

/// What happens next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing changes: stable with the desired CA, or a rotation waiting (for the propagation
    /// delay, the bundles, or leaves still on the old CA).
    Wait,
    /// Move to this state; the reason names the step for the Event.
    Move { next: TrustState, reason: &'static str, message: String },
    /// The request cannot be followed; the state stays as it is.
    Refuse(Refusal),
}

impl TrustState {
    /// The state of a platform with one CA.
    pub fn stable(desired: &DesiredCa) -> Self {
        TrustState {
            rotation: TrustRotation::new(desired.ca.clone()),
            secrets: BTreeMap::from([(desired.ca.fingerprint.clone(), desired.secret_name.clone())]),
        }
    }

    /// The Secret holding `ca`.
    pub fn secret_of(&self, ca: &BundleCa) -> Option<&str> {
        self.secrets.get(&ca.fingerprint).map(String::as_str)
    }

    /// Keeps only the Secrets of the CAs still trusted.
    fn with_rotation(mut self, rotation: TrustRotation) -> Self {
        let trusted: Vec<String> = rotation.trusted().iter().map(|ca| ca.fingerprint.clone()).collect();
        self.secrets.retain(|fingerprint, _| trusted.contains(fingerprint));
        self.rotation = rotation;
        self
    }

    /// The state with `desired` added to the Secrets map.
    fn knowing(mut self, desired: &DesiredCa) -> Self {
        self.secrets.insert(desired.ca.fingerprint.clone(), desired.secret_name.clone());
        self
    }
}

fn short(fingerprint: &str) -> &str {
    fingerprint.get(..16).unwrap_or(fingerprint)
}

/// What to do given the persisted `state`, the CA the Platform asks for, and (during a rotation)
/// what the controller counted. Pure: the controller persists the result.
pub fn decide(
    state: &TrustState,
    desired: &DesiredCa,
    census: &Census,
    now: OffsetDateTime,
    propagation_delay: Duration,
) -> Decision {
    let wanted = &desired.ca.fingerprint;
    let secret = &desired.secret_name;
    match &state.rotation {
        TrustRotation::Stable { current } if &current.fingerprint == wanted => Decision::Wait,
        TrustRotation::Stable { current } if state.secret_of(current) == Some(secret.as_str()) => {
            Decision::Refuse(Refusal {
                reason: "CaReplacedInPlace",
                message: format!(
                    "the Secret {secret} now holds another CA (fingerprint {}) than the one every certificate chains to ({}); replacing a CA in place would cut every certificate loose. Put the previous CA back into {secret}; to rotate, put the new CA into a new Secret and set spec.ca.secretName to it",
                    short(wanted),
                    short(&current.fingerprint)
                ),
            })
        }
        TrustRotation::Stable { current } => match state.rotation.clone().begin(desired.ca.clone(), now) {
            Ok(next) => Decision::Move {
                next: state.clone().knowing(desired).with_rotation(next),
                reason: "RotationStarted",
                message: format!(
                    "CA rotation started: the CA in Secret {secret} ({}) joins every trust bundle next to the current one ({}); certificates are re-issued from it once every bundle carries both and {} have passed",
                    short(wanted),
                    short(&current.fingerprint),
                    format_duration(propagation_delay)
                ),
            },
            Err(err) => Decision::Refuse(Refusal { reason: "RotationRefused", message: err.to_string() }),
        },
        TrustRotation::Distributing { old, new, .. } => {
            if &old.fingerprint == wanted {
                return match state.rotation.clone().abort() {
                    Ok(next) => Decision::Move {
                        next: state.clone().with_rotation(next),
                        reason: "RotationAborted",
                        message: format!(
                            "CA rotation aborted (spec.ca.secretName points at the current CA again): the CA {} leaves the trust bundles; nothing was issued from it",
                            short(&new.fingerprint)
                        ),
                    },
                    Err(err) => Decision::Refuse(Refusal { reason: "RotationRefused", message: err.to_string() }),
                };
            }
            if &new.fingerprint != wanted {
                return Decision::Refuse(another_rotation(state, new, old, desired));
            }
            if census.bundles_pending > 0 {
                return Decision::Wait;
            }
            match state.rotation.clone().bundle_distributed(now, propagation_delay) {
                Ok(next) => Decision::Move {
                    next: state.clone().with_rotation(next),
                    reason: "ReissuingStarted",
                    message: format!(
                        "every trust bundle carries both CAs: tenant CAs and certificates are now re-issued from the CA in Secret {secret} ({})",
                        short(wanted)
                    ),
                },
                // The propagation delay has not passed yet.
                Err(_) => Decision::Wait,
            }
        }
        TrustRotation::Reissuing { old, new } => {
            if &old.fingerprint == wanted {
                return Decision::Refuse(Refusal {
                    reason: "RotationCannotBeAborted",
                    message: format!(
                        "certificates are already being re-issued from the new CA ({}); the rotation must finish. Set spec.ca.secretName back to {}",
                        short(&new.fingerprint),
                        state.secret_of(new).unwrap_or("its Secret")
                    ),
                });
            }
            if &new.fingerprint != wanted {
                return Decision::Refuse(another_rotation(state, new, old, desired));
            }
            let (next, progress) = state.rotation.clone().leaves_observed(census_anchors(&census.progress));
            if matches!(next, TrustRotation::Stable { .. }) {
                Decision::Move {
                    next: state.clone().with_rotation(next),
                    reason: "RotationCompleted",
                    message: format!(
                        "CA rotation completed: nothing chains to the old CA ({}) any more ({} tenant CAs and certificates on the new one); it has left every trust bundle. Its Secret {} is no longer used and may be deleted",
                        short(&old.fingerprint),
                        progress.on_new,
                        state.secret_of(old).unwrap_or("(unknown)")
                    ),
                }
            } else {
                Decision::Wait
            }
        }
    }
}

fn another_rotation(state: &TrustState, new: &BundleCa, old: &BundleCa, desired: &DesiredCa) -> Refusal {
    Refusal {
        reason: "RotationInProgress",
        message: format!(
            "spec.ca.secretName names {} ({}), but a rotation from {} to {} is under way; one rotation at a time. Set spec.ca.secretName back to {} and let it finish (or, before re-issuing starts, to {} to abort it)",
            desired.secret_name,
            short(&desired.ca.fingerprint),
            state.secret_of(old).unwrap_or("(unknown)"),
            state.secret_of(new).unwrap_or("(unknown)"),
            state.secret_of(new).unwrap_or("(unknown)"),
            state.secret_of(old).unwrap_or("(unknown)"),
        ),
    }
}

/// The counted progress as the anchors [`TrustRotation::leaves_observed`] takes.
fn census_anchors(progress: &Progress) -> impl Iterator<Item = govpaas_pki::ChainAnchor> {
    use govpaas_pki::ChainAnchor;
    std::iter::repeat_n(ChainAnchor::Old, progress.on_old)
        .chain(std::iter::repeat_n(ChainAnchor::New, progress.on_new))
        .chain(std::iter::repeat_n(ChainAnchor::Unknown, progress.unknown))
}

/// `1h2m3s` style, as the Platform spells durations.
pub fn format_duration(duration: Duration) -> String {
    let total = duration.whole_seconds().max(0);
    let (h, m, s) = (total / 3600, total % 3600 / 60, total % 60);
    let mut text = String::new();
    if h > 0 {
        text.push_str(&format!("{h}h"));
    }
    if m > 0 {
        text.push_str(&format!("{m}m"));
    }
    if s > 0 || text.is_empty() {
        text.push_str(&format!("{s}s"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use govpaas_pki::{IssuancePolicy, PlatformCaRequest, generate_platform_ca};

    fn ca(secret: &str) -> DesiredCa {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let ca =
            generate_platform_ca(&PlatformCaRequest::new("danang.gov.vn", "govpaas"), &IssuancePolicy::default(), now)
                .unwrap();
        DesiredCa { ca: BundleCa::of(&ca), secret_name: secret.to_owned() }
    }

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + seconds).unwrap()
    }

    const DELAY: Duration = Duration::minutes(10);

    fn moved(decision: Decision, reason: &str) -> TrustState {
        match decision {
            Decision::Move { next, reason: got, .. } => {
                assert_eq!(got, reason);
                next
            }
            other => panic!("expected {reason}, got {other:?}"),
        }
    }

    fn refused(decision: Decision, reason: &str) -> String {
        match decision {
            Decision::Refuse(refusal) => {
                assert_eq!(refusal.reason, reason, "{}", refusal.message);
                refusal.message
            }
            other => panic!("expected the refusal {reason}, got {other:?}"),
        }
    }

    #[test]
    fn a_rotation_runs_from_a_new_secret_name_to_a_single_new_ca() {
        let (old, new) = (ca("govpaas-ca"), ca("govpaas-ca-2027"));
        let stable = TrustState::stable(&old);
        let idle = Census::default();
        assert_eq!(decide(&stable, &old, &idle, at(0), DELAY), Decision::Wait);

        let distributing = moved(decide(&stable, &new, &idle, at(0), DELAY), "RotationStarted");
        assert_eq!(distributing.rotation.trusted().len(), 2);
        assert_eq!(distributing.rotation.issuing(), &old.ca, "leaves still come from the old CA");
        assert_eq!(distributing.secret_of(&new.ca), Some("govpaas-ca-2027"));
        assert_eq!(distributing.secret_of(&old.ca), Some("govpaas-ca"));

        // Not before every bundle carries both CAs, and not before the delay.
        let pending = Census { bundles_pending: 3, ..Census::default() };
        assert_eq!(decide(&distributing, &new, &pending, at(3600), DELAY), Decision::Wait);
        assert_eq!(decide(&distributing, &new, &idle, at(599), DELAY), Decision::Wait);
        let reissuing = moved(decide(&distributing, &new, &idle, at(600), DELAY), "ReissuingStarted");
        assert_eq!(reissuing.rotation.issuing(), &new.ca);

        let on_old = Census { progress: Progress { on_old: 2, on_new: 5, unknown: 1 }, ..Census::default() };
        assert_eq!(decide(&reissuing, &new, &on_old, at(700), DELAY), Decision::Wait);
        // A broken leaf (chaining to neither) does not hold the rotation up.
        let done = Census { progress: Progress { on_old: 0, on_new: 7, unknown: 1 }, ..Census::default() };
        let stable = moved(decide(&reissuing, &new, &done, at(800), DELAY), "RotationCompleted");
        assert_eq!(stable.rotation.trusted(), vec![&new.ca]);
        assert_eq!(stable.secrets.len(), 1, "the old CA's Secret is forgotten");
        assert_eq!(decide(&stable, &new, &idle, at(900), DELAY), Decision::Wait);
    }

    #[test]
    fn pointing_back_aborts_before_reissuing_and_is_refused_after() {
        let (old, new) = (ca("govpaas-ca"), ca("govpaas-ca-2027"));
        let idle = Census::default();
        let distributing = moved(decide(&TrustState::stable(&old), &new, &idle, at(0), DELAY), "RotationStarted");
        let aborted = moved(decide(&distributing, &old, &idle, at(10), DELAY), "RotationAborted");
        assert_eq!(aborted, TrustState::stable(&old));

        let reissuing = moved(decide(&distributing, &new, &idle, at(600), DELAY), "ReissuingStarted");
        let message = refused(decide(&reissuing, &old, &idle, at(700), DELAY), "RotationCannotBeAborted");
        assert!(message.contains("govpaas-ca-2027"), "{message}");
    }

    #[test]
    fn one_rotation_at_a_time() {
        let (old, new, third) = (ca("govpaas-ca"), ca("govpaas-ca-2027"), ca("govpaas-ca-2028"));
        let idle = Census::default();
        let distributing = moved(decide(&TrustState::stable(&old), &new, &idle, at(0), DELAY), "RotationStarted");
        let message = refused(decide(&distributing, &third, &idle, at(1), DELAY), "RotationInProgress");
        assert!(message.contains("govpaas-ca-2028") && message.contains("govpaas-ca-2027"), "{message}");
        let reissuing = moved(decide(&distributing, &new, &idle, at(600), DELAY), "ReissuingStarted");
        refused(decide(&reissuing, &third, &idle, at(601), DELAY), "RotationInProgress");
    }

    #[test]
    fn a_ca_replaced_in_place_is_refused_not_rotated_to() {
        let old = ca("govpaas-ca");
        let replaced = DesiredCa { secret_name: "govpaas-ca".into(), ..ca("govpaas-ca") };
        let message = refused(
            decide(&TrustState::stable(&old), &replaced, &Census::default(), at(0), DELAY),
            "CaReplacedInPlace",
        );
        assert!(message.contains("new Secret"), "{message}");
    }

    #[test]
    fn the_state_round_trips_through_json() {
        let (old, new) = (ca("govpaas-ca"), ca("govpaas-ca-2027"));
        let distributing =
            moved(decide(&TrustState::stable(&old), &new, &Census::default(), at(0), DELAY), "RotationStarted");
        let json = serde_json::to_string(&distributing).unwrap();
        assert_eq!(serde_json::from_str::<TrustState>(&json).unwrap(), distributing);
        assert!(json.contains("\"phase\":\"Distributing\""), "{json}");
    }

    #[test]
    fn durations_print_as_the_platform_spells_them() {
        assert_eq!(format_duration(Duration::minutes(10)), "10m");
        assert_eq!(format_duration(Duration::seconds(3725)), "1h2m5s");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }
}
