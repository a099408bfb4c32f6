//! The trust bundle through a CA rotation: the state machine alone, then with real chains and TLS
//! handshakes at every step.

use time::Duration;

use crate::testing::*;
use crate::tls::handshake_ok;
use crate::{
    BundleCa, CertificateAuthority, ChainAnchor, IssuancePolicy, IssuedCertificate, ServerCertificateRequest,
    TrustRotation,
};

const DELAY: Duration = Duration::minutes(2);

fn server(tenant: &CertificateAuthority) -> IssuedCertificate {
    tenant
        .issue_server_certificate(&ServerCertificateRequest::new([DOMAIN]), &IssuancePolicy::default(), now())
        .unwrap()
}

#[test]
fn a_stable_bundle_holds_one_ca() {
    let a = platform();
    let r = TrustRotation::new(BundleCa::of(&a));
    assert_eq!(r.phase(), "Stable");
    assert_eq!(r.bundle_pem(), a.certificate_pem());
    assert_eq!(r.issuing().fingerprint, a.fingerprint());
}

#[test]
fn the_rotation_walks_its_phases_in_order() {
    let (a, b) = (BundleCa::of(&platform()), BundleCa::of(&platform()));
    let t0 = now();
    let r = TrustRotation::new(a.clone()).begin(b.clone(), t0).unwrap();
    assert_eq!(r.phase(), "Distributing");
    assert_eq!(r.bundle_pem(), format!("{}{}", a.certificate_pem, b.certificate_pem));
    assert_eq!(r.issuing(), &a, "leaves still come from the old CA while the bundle spreads");
    assert_eq!(r.reissue_not_before(DELAY).unwrap().unix_timestamp(), t0.unix_timestamp() + 120);

    let err = r.clone().bundle_distributed(t0 + Duration::minutes(1), DELAY).unwrap_err();
    assert_eq!(err.label(), "RotationConflict");
    let r = r.bundle_distributed(t0 + DELAY, DELAY).unwrap();
    assert_eq!(r.phase(), "Reissuing");
    assert_eq!(r.issuing(), &b);
    assert_eq!(r.trusted(), vec![&a, &b]);
    assert_eq!(r.reissue_not_before(DELAY), None);

    let (r, progress) = r.leaves_observed([ChainAnchor::Old, ChainAnchor::New, ChainAnchor::Unknown]);
    assert_eq!((progress.on_old, progress.on_new, progress.unknown), (1, 1, 1));
    assert_eq!(r.phase(), "Reissuing", "one leaf still chains to the old CA");
    let (r, _) = r.leaves_observed([ChainAnchor::New, ChainAnchor::New, ChainAnchor::Unknown]);
    assert_eq!(r, TrustRotation::Stable { current: b.clone() });
    assert_eq!(r.bundle_pem(), b.certificate_pem);
}

#[test]
fn rotation_events_are_idempotent_and_conflicts_are_refused() {
    let (a, b, c) = (BundleCa::of(&platform()), BundleCa::of(&platform()), BundleCa::of(&platform()));
    let t0 = now();
    let stable = TrustRotation::new(a.clone());
    assert_eq!(stable.clone().begin(a.clone(), t0).unwrap_err().label(), "RotationConflict");
    assert_eq!(stable.clone().bundle_distributed(t0, DELAY).unwrap_err().label(), "RotationConflict");
    assert_eq!(stable.clone().abort().unwrap_err().label(), "RotationConflict");
    let (same, _) = stable.clone().leaves_observed([ChainAnchor::Old]);
    assert_eq!(same, stable);

    let distributing = stable.begin(b.clone(), t0).unwrap();
    assert_eq!(distributing.clone().begin(b.clone(), t0 + DELAY).unwrap(), distributing, "same CA: no-op");
    assert_eq!(distributing.clone().begin(c.clone(), t0).unwrap_err().label(), "RotationConflict");
    let (same, _) = distributing.clone().leaves_observed([]);
    assert_eq!(same, distributing, "no leaf moves before the bundle has spread");
    assert_eq!(distributing.clone().abort().unwrap(), TrustRotation::Stable { current: a.clone() });

    let reissuing = distributing.bundle_distributed(t0 + DELAY, DELAY).unwrap();
    assert_eq!(reissuing.clone().bundle_distributed(t0 + DELAY * 2, DELAY).unwrap(), reissuing);
    assert_eq!(reissuing.clone().begin(b, t0).unwrap(), reissuing);
    assert_eq!(reissuing.clone().begin(c, t0).unwrap_err().label(), "RotationConflict");
    assert_eq!(reissuing.abort().unwrap_err().label(), "RotationConflict");
}

#[test]
fn the_state_serialises_for_the_controller_to_keep() {
    let (a, b) = (BundleCa::of(&platform()), BundleCa::of(&platform()));
    let r = TrustRotation::new(a).begin(b, now()).unwrap();
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["phase"], "Distributing");
    let back: TrustRotation = serde_json::from_value(json).unwrap();
    assert_eq!(back, r);
}

#[test]
fn bundle_entries_come_from_pem() {
    let a = platform();
    let entry = BundleCa::from_pem(a.certificate_pem()).unwrap();
    assert_eq!(entry, BundleCa::of(&a));
    let two = format!("{}{}", a.certificate_pem(), a.certificate_pem());
    assert_eq!(BundleCa::from_pem(&two).unwrap_err().label(), "InvalidPem");
    assert_eq!(BundleCa::from_pem("junk").unwrap_err().label(), "InvalidPem");
}

/// A platform CA rotation end to end: at every step a client holding the current bundle completes
/// a TLS handshake with every server, whichever CA its leaf chains to.
#[test]
fn a_platform_ca_rotation_keeps_every_handshake_working() {
    let old_root = platform();
    let old_tenant = tenant_of(&old_root, AGENCY, DOMAIN);
    let old_leaf = server(&old_tenant);
    let t0 = now();

    let check = |bundle: &str, leaf: &IssuedCertificate| {
        handshake_ok(leaf.chain_pem().as_bytes(), leaf.private_key_pem().expose().as_bytes(), bundle.as_bytes(), DOMAIN)
    };

    // Stable: the old world.
    let r = TrustRotation::new(BundleCa::of(&old_root));
    check(&r.bundle_pem(), &old_leaf).unwrap();
    assert_eq!(r.anchor_of(&chain(old_leaf.chain_pem())), ChainAnchor::Old);

    // Distributing: the new root joins the bundle; servers still present old leaves.
    let new_root = platform();
    let r = r.begin(BundleCa::of(&new_root), t0).unwrap();
    let two_ca_bundle = r.bundle_pem();
    check(&two_ca_bundle, &old_leaf).unwrap();
    // A consumer still on the old bundle also keeps working: nothing new is served yet.
    check(old_root.certificate_pem(), &old_leaf).unwrap();

    // Reissuing: tenants get CAs under the new root; leaves move one by one.
    let r = r.bundle_distributed(t0 + DELAY, DELAY).unwrap();
    assert_eq!(r.issuing().fingerprint, new_root.fingerprint());
    let new_tenant = tenant_of(&new_root, AGENCY, DOMAIN);
    let new_leaf = server(&new_tenant);
    check(&two_ca_bundle, &old_leaf).unwrap();
    check(&two_ca_bundle, &new_leaf).unwrap();
    let anchors = [chain(old_leaf.chain_pem()), chain(new_leaf.chain_pem())].map(|c| r.anchor_of(&c));
    assert_eq!(anchors, [ChainAnchor::Old, ChainAnchor::New]);
    let (r, progress) = r.leaves_observed(anchors);
    assert_eq!(progress.on_old, 1);
    assert_eq!(r.phase(), "Reissuing", "the old root stays while a leaf needs it");
    // This is why it stays: with the new root alone, the old leaf would fail.
    let err = check(new_root.certificate_pem(), &old_leaf).unwrap_err();
    assert_eq!(err.label(), "Tls", "{err}");

    // Every leaf has moved: the old root leaves the bundle.
    let remaining = [r.anchor_of(&chain(new_leaf.chain_pem()))];
    let (r, _) = r.leaves_observed(remaining);
    assert_eq!(r.phase(), "Stable");
    assert_eq!(r.bundle_pem(), new_root.certificate_pem());
    check(&r.bundle_pem(), &new_leaf).unwrap();
    assert_eq!(r.anchor_of(&chain(old_leaf.chain_pem())), ChainAnchor::Unknown);
}

/// A tenant CA renewal (new intermediate, same root) needs no bundle change: the bundle holds
/// roots, and both intermediates chain to the same root.
#[test]
fn a_tenant_ca_renewal_needs_no_bundle_change() {
    let root = platform();
    let first = tenant_of(&root, AGENCY, DOMAIN);
    let second = tenant_of(&root, AGENCY, DOMAIN);
    let bundle = root.certificate_pem();
    for leaf in [server(&first), server(&second)] {
        handshake_ok(
            leaf.chain_pem().as_bytes(),
            leaf.private_key_pem().expose().as_bytes(),
            bundle.as_bytes(),
            DOMAIN,
        )
        .unwrap();
    }
}
