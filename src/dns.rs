//! The resolver: hickory-resolver pointed at the configured servers, A records only.
//!
//! vpcgate never asks for AAAA or PTR records: routes are IPv4 prefix lists and the address it
//! checks is the address it dials. Names are queried fully qualified (trailing dot), so no search
//! domain from resolv.conf can turn `s3.amazonaws.com` into something else, and the hosts file is
//! not consulted. Answers are cached by TTL inside hickory.

use crate::config::DnsServers;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

pub struct Dns {
    resolver: TokioResolver,
    /// Human-readable server list for refusals and the banner.
    servers: String,
    /// Hard upper bound for one lookup, whatever hickory's retries do.
    timeout: Duration,
}

fn name_server(addr: SocketAddr) -> NameServerConfig {
    let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
    for c in ns.connections.iter_mut() {
        c.port = addr.port();
    }
    ns
}

impl Dns {
    pub fn new(servers: &DnsServers, timeout: Duration) -> Result<Dns, String> {
        let addrs: Vec<SocketAddr> = match servers {
            DnsServers::List(l) => l.clone(),
            DnsServers::System => {
                let (conf, _) = hickory_resolver::system_conf::read_system_conf().map_err(|e| {
                    format!("cannot read the system DNS configuration ({e}); set dns.servers to resolver addresses such as [\"169.254.169.253:53\"]")
                })?;
                let mut seen: Vec<SocketAddr> = Vec::new();
                for ns in conf.name_servers() {
                    let port = ns.connections.first().map(|c| c.port).unwrap_or(53);
                    let a = SocketAddr::new(ns.ip, port);
                    if !seen.contains(&a) {
                        seen.push(a);
                    }
                }
                if seen.is_empty() {
                    return Err(
                        "the system DNS configuration lists no name servers; set dns.servers to resolver addresses such as [\"169.254.169.253:53\"]".into()
                    );
                }
                seen
            }
        };
        let config = ResolverConfig::from_name_servers(addrs.iter().copied().map(name_server).collect());
        let mut opts = ResolverOpts::default();
        opts.timeout = timeout;
        opts.attempts = 1;
        opts.ndots = 0;
        opts.cache_size = 4096;
        opts.use_hosts_file = ResolveHosts::Never;
        opts.recursion_desired = true;
        let resolver = hickory_resolver::Resolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(opts)
            .build()
            .map_err(|e| format!("cannot start the DNS resolver ({e}); check dns.servers"))?;
        let servers = addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ");
        Ok(Dns { resolver, servers, timeout })
    }

    pub fn servers(&self) -> &str {
        &self.servers
    }

    /// A records for `name`, in answer order. `Ok(vec![])` when the name exists without A records.
    pub async fn lookup_a(&self, name: &str) -> Result<Vec<Ipv4Addr>, String> {
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        let bound = self.timeout + Duration::from_millis(250);
        match tokio::time::timeout(bound, self.resolver.ipv4_lookup(fqdn.as_str())).await {
            Err(_) => Err(format!("no answer within {}", humantime::format_duration(self.timeout))),
            Ok(Ok(lookup)) => Ok(lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(a.0),
                    _ => None,
                })
                .collect()),
            Ok(Err(e)) if e.is_nx_domain() => Err("no such name (NXDOMAIN)".into()),
            Ok(Err(e)) if e.is_no_records_found() => Ok(Vec::new()),
            Ok(Err(e)) => Err(one_line(&e.to_string())),
        }
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
