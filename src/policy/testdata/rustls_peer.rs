//! Fixture helper: a minimal rustls client or server on loopback, used by
//! capture_hellos.py (next to this file) to capture real rustls hellos.
//!   rustls_peer client <port> <sni>
//!   rustls_peer server <port> <cert.pem> <key.pem>
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("client") => client(args[2].parse().unwrap(), &args[3]),
        Some("server") => server(args[2].parse().unwrap(), &args[3], &args[4]),
        _ => {
            eprintln!("usage: rustls_peer client <port> <sni> | server <port> <cert.pem> <key.pem>");
            std::process::exit(2);
        }
    }
}

fn client(port: u16, sni: &str) {
    // An empty root store is enough: the capture listener hangs up after the ClientHello.
    let roots = rustls::RootCertStore::empty();
    let config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    let name = ServerName::try_from(sni.to_string()).expect("server name");
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client connection");
    let mut sock = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect");
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    let res = tls.write_all(b"GET / HTTP/1.1\r\n\r\n");
    eprintln!("rustls client finished: {res:?}");
}

fn server(port: u16, cert: &str, key: &str) {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(cert).expect("cert file").map(|c| c.expect("cert")).collect();
    let key = PrivateKeyDer::from_pem_file(key).expect("key");
    let config = rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(certs, key).expect("server config");
    let config = Arc::new(config);
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("bind");
    println!("listening");
    let (mut sock, _) = listener.accept().expect("accept");
    let mut conn = rustls::ServerConnection::new(config).expect("server connection");
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    let mut buf = [0u8; 64];
    let res = tls.read(&mut buf);
    eprintln!("rustls server finished: {res:?}");
}
