//! A small authoritative DNS server on loopback (UDP + TCP on the same port), built on
//! hickory-server 0.26 with a request handler of our own so that every query is recorded.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::rdata::{A, AAAA, SOA};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::oneshot;

/// TTL of every record served, and the negative-caching TTL (SOA minimum) of NXDOMAIN/NODATA answers.
pub const DNS_TTL: u32 = 5;

/// Normalises a DNS name the way the fake server keys and logs it: lowercase, no trailing dot.
fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

struct FakeDnsHandler {
    records: HashMap<String, Vec<IpAddr>>,
    /// (name, query type) of every query received, in order.
    log: Arc<Mutex<Vec<(String, RecordType)>>>,
}

impl FakeDnsHandler {
    async fn respond<R: ResponseHandler>(&self, request: &Request, mut handle: R) -> ResponseInfo {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = true;

        // Echo EDNS when the client used it, so UDP answers are not capped at 512 bytes.
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if request.edns.is_some() {
            builder.edns(&edns);
        }

        if request.metadata.message_type != MessageType::Query || request.metadata.op_code != OpCode::Query {
            let response = builder.error_msg(&request.metadata, ResponseCode::NotImp);
            return finish(handle.send_response(response).await, metadata);
        }
        let query = match request.request_info() {
            Ok(info) => info.query,
            Err(_) => {
                let response = builder.error_msg(&request.metadata, ResponseCode::FormErr);
                return finish(handle.send_response(response).await, metadata);
            }
        };

        let name = normalize(&query.name().to_string());
        let qtype = query.query_type();
        self.log.lock().unwrap().push((name.clone(), qtype));

        let owner: Name = query.original().name().clone();
        let mut answers: Vec<Record> = Vec::new();
        match self.records.get(&name) {
            None => metadata.response_code = ResponseCode::NXDomain,
            Some(ips) => {
                for ip in ips {
                    let rdata = match (qtype, ip) {
                        (RecordType::A, IpAddr::V4(v4)) => RData::A(A(*v4)),
                        (RecordType::AAAA, IpAddr::V6(v6)) => RData::AAAA(AAAA(*v6)),
                        _ => continue,
                    };
                    answers.push(Record::from_rdata(owner.clone(), DNS_TTL, rdata));
                }
            }
        }

        // Negative answers (NXDOMAIN, or NOERROR without data) carry an SOA so that resolvers
        // cache them for DNS_TTL seconds, as they would with a real authoritative server.
        let mut soa: Vec<Record> = Vec::new();
        if answers.is_empty() {
            let zone = if owner.num_labels() > 1 { owner.base_name() } else { Name::root() };
            let mname = Name::from_ascii("ns.fake-dns.test.").unwrap();
            let rname = Name::from_ascii("hostmaster.fake-dns.test.").unwrap();
            let data = SOA::new(mname, rname, 1, 3600, 600, 86400, DNS_TTL);
            soa.push(Record::from_rdata(zone, DNS_TTL, RData::SOA(data)));
        }

        let response = builder.build(metadata, answers.iter(), std::iter::empty::<&Record>(), soa.iter(), std::iter::empty::<&Record>());
        finish(handle.send_response(response).await, metadata)
    }
}

fn finish<E>(sent: Result<ResponseInfo, E>, mut metadata: Metadata) -> ResponseInfo {
    sent.unwrap_or_else(|_| {
        metadata.response_code = ResponseCode::ServFail;
        ResponseInfo::from(Header { metadata, counts: HeaderCounts::default() })
    })
}

// `RequestHandler` is declared with `#[async_trait]`; this is the same signature written out by
// hand, so that no async-trait dependency is needed.
impl RequestHandler for FakeDnsHandler {
    fn handle_request<'life0, 'life1, 'async_trait, R, T>(
        &'life0 self,
        request: &'life1 Request,
        response_handle: R,
    ) -> Pin<Box<dyn Future<Output = ResponseInfo> + Send + 'async_trait>>
    where
        R: ResponseHandler + 'async_trait,
        T: Time + 'async_trait,
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.respond(request, response_handle))
    }
}

/// A DNS server on 127.0.0.1 (UDP and TCP on the same OS-chosen port) that answers only the
/// names it was started with. Stops when dropped.
pub struct FakeDns {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<(String, RecordType)>>>,
    _shutdown: oneshot::Sender<()>,
}

impl FakeDns {
    /// Starts a UDP and TCP DNS server on 127.0.0.1 with an OS-chosen port (same port for both),
    /// answering only the given names.
    ///
    /// `records`: (name without trailing dot, addresses); IPv4 addresses answer A queries, IPv6
    /// addresses answer AAAA. Any other name gets NXDOMAIN; a known name without an address of the
    /// queried type gets NOERROR with no answers. Answers have TTL 5 s; negative answers carry an
    /// SOA whose minimum is 5 s. Names are matched case-insensitively.
    pub async fn start(records: &[(&str, &[IpAddr])]) -> FakeDns {
        let mut map: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for (name, ips) in records {
            map.entry(normalize(name)).or_default().extend_from_slice(ips);
        }
        let log = Arc::new(Mutex::new(Vec::new()));
        let handler = FakeDnsHandler { records: map, log: log.clone() };

        let (udp, tcp) = bind_udp_and_tcp().await;
        let addr = udp.local_addr().expect("udp local_addr");

        let mut server = Server::new(handler);
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(10), 64);

        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            // Resolves when FakeDns is dropped (sender dropped). If the runtime goes away first,
            // this task is dropped, and with it the server and all of its tasks.
            let _ = rx.await;
            let _ = server.shutdown_gracefully().await;
        });

        FakeDns { addr, log, _shutdown: tx }
    }

    /// How many queries of the given type were received so far, e.g. `count("AAAA")`.
    /// Case-insensitive type name.
    pub fn count(&self, qtype: &str) -> usize {
        let wanted = qtype.to_ascii_uppercase();
        self.log.lock().unwrap().iter().filter(|(_, t)| t.to_string().to_ascii_uppercase() == wanted).count()
    }

    /// Names queried, in order, lowercased without trailing dot (one entry per query).
    pub fn queried_names(&self) -> Vec<String> {
        self.log.lock().unwrap().iter().map(|(n, _)| n.clone()).collect()
    }
}

/// A UDP socket and a TCP listener on the same free port of 127.0.0.1 (a DNS server's pair).
pub async fn bind_udp_and_tcp() -> (UdpSocket, TcpListener) {
    for _ in 0..100 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind UDP on 127.0.0.1");
        let port = udp.local_addr().expect("udp local_addr").port();
        if let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)).await {
            return (udp, tcp);
        }
    }
    panic!("could not find a port free for both UDP and TCP on 127.0.0.1");
}

/// A loopback address that is bound but never answers: a UDP socket that is never read, plus a
/// TCP listener on the same port that is never accepted from (connects succeed, nothing replies),
/// so DNS queries to it time out over both transports. The sockets live for the whole test
/// process; every call returns the same address.
pub async fn unreachable_dns_addr() -> SocketAddr {
    static SILENT: OnceLock<(std::net::UdpSocket, std::net::TcpListener)> = OnceLock::new();
    let (udp, _tcp) = SILENT.get_or_init(|| {
        for _ in 0..100 {
            let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind silent UDP socket");
            let port = udp.local_addr().expect("silent socket local_addr").port();
            if let Ok(tcp) = std::net::TcpListener::bind(("127.0.0.1", port)) {
                return (udp, tcp);
            }
        }
        panic!("could not find a port free for both UDP and TCP on 127.0.0.1");
    });
    udp.local_addr().expect("silent socket local_addr")
}
