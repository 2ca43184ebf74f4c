//! vpcgate: a local HTTPS forward proxy that keeps AWS S3 traffic on private routes.
//!
//! # Layout
//!
//! One connection, start to finish, and the module that owns each step:
//!
//! ```text
//! start: state built (DNS, CA, pool), listeners bound, reloads ........... server
//! accept (connection limit, header timeout, graceful shutdown) ......... proxy::Listener
//!   -> proxy request: CONNECT host:port, or a refusal (plaintext http://) proxy::handle
//!   -> the decision, one function for the proxy, explain and check ...... proxy::connect::decide
//!      credential endpoints (IMDS, ECS, Pod Identity) refused: NO_PROXY  policy::deny
//!      strict target parse (no IP literals, brackets, userinfo; ports) . policy::authority
//!      host class by the S3 hostname grammar, other services' names ..... policy::host
//!      plan: which routes of the name's service may carry it, or Deny ... policy::connect::plan
//!      the bucket perimeter from the name ................................ policy::bucket
//!      resolve, A records only, configured servers ....................... dns
//!      choose: first address inside a candidate route, or Deny .......... policy::connect::choose
//!      (recorded step by step in a ConnectRecord for the log lines)
//!   -> inspect mode, a policy Deny of a name the CA may sign: 200, TLS, an
//!      error per request, nothing dialled (proxy.refuse_in_tunnel) ........ proxy::inspect::refuse
//!   -> Allowed: passthrough dials exactly that address, then answers 200;
//!      inspect answers 200 and dials on the first request (or reuses a
//!      pooled connection to it) ............................................ proxy::connect
//!   -> tls.mode = "passthrough": ClientHello (SNI = host, TLS >= 1.2, FS
//!      offered), ServerHello (forward secrecy), then copy bytes ............ proxy::tunnel, policy::tls
//!      a cut handshake, either mode, either side ........................... policy::handshake
//!   -> tls.mode = "inspect": TLS to the client with a leaf minted for the
//!      host (FS suites only) .............................................. certs, proxy::inspect
//!      every request (inspect::handle: take_head, check_head,
//!      check_perimeter, read_body, forward): paired with its head as it
//!      arrived (framing judged before hyper changes it) ..................... policy::framing
//!      Host = CONNECT host, no SigV2 (header, query, POST form), no
//!      smuggling shapes, Connection names no checked header; another
//!      service's POST read whole for a Query-API SigV2 form ................. policy::request
//!      refusals in the client's protocol (S3 XML, Query XML, JSON) ........ policy::deny::error_body
//!      streamed to a pooled upstream TLS connection to the checked address  proxy::upstream
//!      the client socket, whole-record TLS reads, read-ahead bodies ......... proxy::io
//!   -> evidence: typed records, one writer per event (connect, request,
//!      upstream_*, handshake_refused, close, reload) ......................... telemetry
//! ```
//!
//! Around it: `config` (layers, validation), `admin` (/healthz, /readyz, /metrics), `explain` (the
//! decision as a dry run), `check` (a doctor for the host and the client setup), `routes` (CIDR
//! sources, prefix-list caches), `certs` (the CA and leaves), `audit` (the AWS side of the routes:
//! IMDSv2, the EC2 answers parsed in `audit::facts`, judged by the pure `audit::checks`, vpcgate's
//! own signed calls in `audit::aws`, decided like a CONNECT), `follow` (routes that follow a prefix
//! list, and `audit.require`: the route proof the CONNECT path checks through `State::evidence`).
//!
//! Refusals have three types behind one pair of traits ([`policy::deny::Refusal`]: a code and a
//! sentence; [`policy::deny::HttpRefusal`]: a status and an S3 error code): [`policy::deny::Deny`]
//! at the CONNECT, [`policy::request::RequestDeny`] inside a tunnel (with
//! [`policy::request::UpstreamFailure`] for the upstream), and [`policy::handshake::HandshakeRefusal`]
//! for a TLS handshake in either mode. Every HTTP refusal's body comes from
//! [`policy::deny::error_body`], in the client's protocol. Every decision event is a record of
//! [`telemetry`].
//!
//! Rule of the house: `policy` and `routes` are pure (no I/O, no tokio) and never import from
//! `proxy` or `dns`; the network modules call the pure ones, never the other way round.
//! `config` reads files and environment and hands validated values to both.

pub mod admin;
pub mod audit;
pub mod certs;
pub mod check;
pub mod config;
pub mod dns;
pub mod explain;
pub mod follow;
pub mod policy;
pub mod proxy;
pub mod reference;
pub mod routes;
pub mod server;
pub mod telemetry;
