//! TLS for simulated clusters: one CA and its certificates, made once per process in memory,
//! and the configurations the members and clients use, assembled by production's own
//! `etcd::tls::config` — the production acceptor, connector and verifiers over simulated TCP.
//!
//! Determinism: rustls draws its randomness from ring, outside madsim, so handshake bytes
//! differ from run to run; their sizes do not (Ed25519 keys and signatures have fixed sizes,
//! and so do X25519 key shares), and nothing else of the run depends on those bytes. The
//! determinism tests run with TLS on to hold that to account.

use std::sync::{Arc, OnceLock};

use etcd::net::Connector;
use etcd::tls::config::{self, Identity, Trust};
use etcd::tls::{ClientTls, ServerTls};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, PKCS_ED25519,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::RootCertStore;

/// What a TLS cluster runs with.
pub struct Material {
    /// The client listeners' configuration (no client certificates asked for).
    pub clients: ServerTls,
    /// The peer listeners': a peer must show a certificate the CA signed.
    pub peers: ServerTls,
    /// How members dial peers: showing their certificate, trusting only the CA.
    pub peer_dialer: Connector,
    /// How the simulated clients dial members.
    pub client_dialer: Connector,
}

/// The one set of certificates, for `member-1` to `member-199` (members added at run time
/// are numbered from 100).
pub fn material() -> &'static Material {
    static MATERIAL: OnceLock<Material> = OnceLock::new();
    MATERIAL.get_or_init(make)
}

fn make() -> Material {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "simulated CA");
    let ca_key = KeyPair::generate_for(&PKCS_ED25519).expect("a CA key");
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("a CA");
    let names: Vec<String> = (1..200).map(crate::cluster::name).collect();
    let mut params = CertificateParams::new(names).expect("member params");
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate_for(&PKCS_ED25519).expect("a member key");
    let cert = params.signed_by(&key, &ca).expect("a member certificate");
    let chain = vec![CertificateDer::from(cert.der().to_vec())];
    let private = || PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.der().to_vec()))
        .expect("the CA is a root");
    let roots = Arc::new(roots);

    let identity = || (chain.clone(), private());
    let server = |clients: Option<Arc<RootCertStore>>| {
        config::server(identity(), clients, Vec::new()).expect("a server configuration")
    };
    let client = |shown: Option<Identity>| {
        config::client(Trust::Roots(Arc::clone(&roots)), shown).expect("a client configuration")
    };
    Material {
        clients: ServerTls::fixed(server(None)),
        peers: ServerTls::fixed(server(Some(Arc::clone(&roots)))),
        peer_dialer: Connector::with_tls(ClientTls::fixed(client(Some(identity())))),
        client_dialer: Connector::with_tls(ClientTls::fixed(client(None))),
    }
}
