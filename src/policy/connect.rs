//! The connect decision, in two pure steps around the DNS lookup:
//!
//! 1. [`plan`]: host class + configuration → the routes that may carry the name, each with the DNS name
//!    to resolve for it (the requested host for gateway routes, the endpoint name for interface routes),
//!    or a [`Deny`] for classes that can never be private.
//! 2. [`choose`]: those candidates + what DNS answered → the one address to dial, the route and the CIDR
//!    it matched, or a [`Deny`] naming the addresses and routes.
//!
//! The proxy dials exactly the chosen address: there is no second lookup between check and connect.

use crate::policy::deny::{Answer, Deny};
use crate::policy::host::HostClass;
use crate::routes::{Route, RouteKind};
use ipnet::Ipv4Net;
use std::net::{Ipv4Addr, SocketAddr};

/// One route that may carry the connection, and the DNS name whose answers must fall inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Index into the configured routes.
    pub route: usize,
    pub resolve: String,
}

/// The address vpcgate will dial and why it is private.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    pub addr: Ipv4Addr,
    pub route: usize,
    pub cidr: Ipv4Net,
    /// The name whose answer was used.
    pub resolved: String,
}

/// Which routes may carry `host` of class `class`, or why none can.
pub fn plan(host: &str, class: &HostClass, regions: &[String], routes: &[Route]) -> Result<Vec<Candidate>, Deny> {
    let host_s = host.to_string();
    match class {
        HostClass::Outside => return Err(Deny::NotAws { host: host_s }),
        HostClass::Dualstack { .. } => return Err(Deny::Dualstack { host: host_s }),
        HostClass::Accelerate { .. } => return Err(Deny::Accelerate { host: host_s }),
        HostClass::Website { .. } => return Err(Deny::Website { host: host_s }),
        HostClass::GlobalSts => return Err(Deny::GlobalSts { host: host_s }),
        HostClass::OtherAws { .. } => return Err(Deny::UnknownAwsName { host: host_s }),
        _ => {}
    }
    if let Some(region) = class.region() {
        if !regions.iter().any(|r| r == region) {
            return Err(Deny::OtherRegion { host: host_s, region: region.to_string(), configured: regions.to_vec() });
        }
    }
    let gateway = |i: usize| Candidate { route: i, resolve: host.to_string() };
    let interface = |i: usize, r: &Route| Candidate { route: i, resolve: r.endpoint.clone().unwrap_or_default() };
    let interface_region_ok = |r: &Route| match (r.region.as_deref(), class.region()) {
        (Some(rr), Some(cr)) => rr == cr,
        (None, _) => true,
        (Some(_), None) => false,
    };
    // A route carries its own service's names only: an S3 prefix list holds addresses that
    // other services never answer from, and an STS endpoint serves no bucket.
    let service = class.service();
    let mut out = Vec::new();
    for (i, r) in routes.iter().enumerate().filter(|(_, r)| r.serves(service)) {
        let c = match (class, r.kind) {
            (HostClass::MultiRegion { .. }, RouteKind::Interface) if r.serves_multi_region() => Some(interface(i, r)),
            (HostClass::MultiRegion { .. }, _) => None,
            // An interface endpoint's own names resolve to its ENIs: resolve the requested name,
            // but only for the endpoint the route names. Anyone can create an S3 interface
            // endpoint whose addresses overlap a route's CIDRs; its name must not pick them.
            (HostClass::Vpce { region, endpoint, .. }, RouteKind::Interface) => {
                r.endpoint.as_deref().is_some_and(|e| same_endpoint(endpoint, e, region)).then(|| gateway(i))
            }
            (HostClass::Vpce { .. }, RouteKind::Gateway) => None,
            (_, RouteKind::Gateway) => Some(gateway(i)),
            // PrivateLink for S3 serves the regional S3, access point and control names of its region;
            // not the legacy global name, FIPS, Object Lambda, Express, Outposts or other services.
            // Another service's interface endpoint serves that service's regional name.
            (
                HostClass::Regional { .. }
                | HostClass::DashRegion { .. }
                | HostClass::AccessPoint { .. }
                | HostClass::Control { .. }
                | HostClass::Service { .. },
                RouteKind::Interface,
            ) if !r.serves_multi_region() && interface_region_ok(r) => Some(interface(i, r)),
            (_, RouteKind::Interface) => None,
        };
        out.extend(c);
    }
    if !out.is_empty() {
        return Ok(out);
    }
    Err(no_route(host_s, class, routes))
}

/// Why no configured route carries `class`, with the change that would.
fn no_route(host_s: String, class: &HostClass, routes: &[Route]) -> Deny {
    match class {
        HostClass::Service { service, region } => Deny::NoRouteForService { host: host_s, service: service.clone(), region: region.clone() },
        HostClass::MultiRegion { .. } => Deny::MultiRegionNeedsInterface { host: host_s },
        HostClass::Global { .. } => Deny::NoRouteForClass {
            host: host_s,
            class: class.name(),
            why: "PrivateLink does not serve the legacy global endpoint; set AWS_S3_US_EAST_1_REGIONAL_ENDPOINT=regional or use the bucket's regional endpoint s3.REGION.amazonaws.com",
        },
        HostClass::Fips { .. } => Deny::NoRouteForClass {
            host: host_s,
            class: class.name(),
            why: "PrivateLink for S3 does not serve FIPS endpoints; add a gateway route or set use_fips_endpoint = false",
        },
        HostClass::Vpce { .. } if routes.iter().any(|r| r.kind == RouteKind::Interface) => Deny::NoRouteForClass {
            host: host_s,
            class: class.name(),
            why: "it names an interface endpoint that no interface route is configured for; use the endpoint name of a configured route, or add a [[routes]] entry with kind = \"interface\" and this endpoint",
        },
        HostClass::Vpce { .. } => Deny::NoRouteForClass {
            host: host_s,
            class: class.name(),
            why: "it is an interface endpoint name and no interface route is configured; add a [[routes]] entry with kind = \"interface\"",
        },
        _ => Deny::NoRouteForClass {
            host: host_s,
            class: class.name(),
            why: "interface routes carry only S3 regional, access point and control names of their region; add a gateway route for this name",
        },
    }
}

/// Whether the `vpce-…` label of an endpoint-specific name (`requested`, regional or zonal, e.g.
/// `vpce-0abc-1234` or `vpce-0abc-1234-us-east-1a`) names the endpoint of a route's `endpoint`
/// DNS name. Zonal labels end in `-REGION` plus one AZ letter; that suffix is ignored on both sides.
fn same_endpoint(requested: &str, route_endpoint: &str, region: &str) -> bool {
    let regional = |label: &str| -> String {
        let zonal = label.len().checked_sub(region.len() + 2).and_then(|cut| {
            let (base, tail) = label.split_at(cut);
            let az = tail.strip_prefix('-')?.strip_prefix(region)?;
            (az.len() == 1 && az.as_bytes()[0].is_ascii_lowercase()).then(|| base.to_string())
        });
        zonal.unwrap_or_else(|| label.to_string())
    };
    let Some(own) = route_endpoint.split('.').find(|l| l.starts_with("vpce-")) else { return false };
    regional(&requested.to_ascii_lowercase()) == regional(&own.to_ascii_lowercase())
}

/// Addresses vpcgate never dials whatever the routes say: unspecified, broadcast, multicast,
/// reserved, and link-local (169.254.0.0/16, where instance metadata and its credentials live).
fn never_dial(addr: Ipv4Addr) -> bool {
    addr.is_unspecified() || addr.octets()[0] == 0 || addr.is_broadcast() || addr.is_multicast() || addr.is_link_local() || addr.octets()[0] >= 240
}

/// Pick the first address, in candidate order then answer order, that lies inside its candidate's
/// route. `answers` holds what DNS said for each distinct name in the candidates. `own` lists
/// vpcgate's own listening sockets, which are never dialled.
pub fn choose(
    host: &str,
    candidates: &[Candidate],
    answers: &[Answer],
    routes: &[Route],
    port: u16,
    own: &[SocketAddr],
    dns_servers: &str,
) -> Result<Chosen, Deny> {
    let mut saw_address = false;
    for c in candidates {
        let Some(ans) = answers.iter().find(|a| a.name == c.resolve) else { continue };
        let Ok(addrs) = &ans.result else { continue };
        saw_address |= !addrs.is_empty();
        let route = &routes[c.route];
        for &addr in addrs {
            if never_dial(addr) {
                continue;
            }
            if let Some(cidr) = route.cidr_for(addr) {
                let target = SocketAddr::from((addr, port));
                if own.iter().any(|o| o.port() == port && (o.ip() == target.ip() || o.ip().is_unspecified())) {
                    return Err(Deny::SelfConnect { addr: target });
                }
                return Ok(Chosen { addr, route: c.route, cidr, resolved: c.resolve.clone() });
            }
        }
    }
    let relevant: Vec<Answer> = answers.iter().filter(|a| candidates.iter().any(|c| c.resolve == a.name)).cloned().collect();
    if !saw_address {
        return Err(Deny::Dns { host: host.to_string(), answers: relevant, servers: dns_servers.to_string() });
    }
    let route_names = candidates
        .iter()
        .map(|c| {
            let r = &routes[c.route];
            let cidrs =
                if r.cidrs.len() <= 3 { r.cidrs.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(" ") } else { format!("{} CIDRs", r.cidrs.len()) };
            match r.kind {
                RouteKind::Gateway => format!("{} [{}]", r.name, cidrs),
                RouteKind::Interface => format!("{} via {} [{}]", r.name, c.resolve, cidrs),
            }
        })
        .collect();
    Err(Deny::OutsideRoutes { host: host.to_string(), answers: relevant, routes: route_names })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::host::classify;

    fn gw(name: &str, cidrs: &[&str]) -> Route {
        Route {
            name: name.into(),
            kind: RouteKind::Gateway,
            cidrs: cidrs.iter().map(|c| c.parse().unwrap()).collect(),
            endpoint: None,
            region: None,
            source: "test".into(),
            service: "s3".into(),
            follow: None,
        }
    }
    fn iface(name: &str, endpoint: &str, region: Option<&str>, cidrs: &[&str]) -> Route {
        Route {
            name: name.into(),
            kind: RouteKind::Interface,
            cidrs: cidrs.iter().map(|c| c.parse().unwrap()).collect(),
            endpoint: Some(endpoint.into()),
            region: region.map(str::to_string),
            source: "test".into(),
            service: "s3".into(),
            follow: None,
        }
    }
    fn of(service: &str, mut r: Route) -> Route {
        r.service = service.into();
        r
    }
    fn regions(r: &[&str]) -> Vec<String> {
        r.iter().map(|s| s.to_string()).collect()
    }
    fn decide(host: &str, routes: &[Route]) -> Result<Vec<Candidate>, Deny> {
        plan(host, &classify(host), &regions(&["us-east-1"]), routes)
    }
    fn ans(name: &str, addrs: &[&str]) -> Answer {
        Answer { name: name.into(), result: Ok(addrs.iter().map(|a| a.parse().unwrap()).collect()) }
    }

    const EP: &str = "vpce-0abc-1234.s3.us-east-1.vpce.amazonaws.com";

    #[test]
    fn classes_that_are_never_private() {
        let routes = [gw("g", &["52.216.0.0/15"]), iface("i", EP, Some("us-east-1"), &["10.0.0.0/16"])];
        for (host, code) in [
            ("b.s3.dualstack.us-east-1.amazonaws.com", "dualstack"),
            ("b.s3-accelerate.amazonaws.com", "accelerate"),
            ("b.s3-website-us-east-1.amazonaws.com", "website"),
            ("b.s3.eu-west-1.amazonaws.com", "other_region"),
            ("example.com", "not_aws"),
            ("x.accesspoint.s3-global.amazonaws.com", "multi_region_needs_interface"),
        ] {
            assert_eq!(decide(host, &routes).unwrap_err().code(), code, "{host}");
        }
    }

    #[test]
    fn gateway_and_interface_candidates() {
        let routes = [gw("g", &["52.216.0.0/15"]), iface("i", EP, Some("us-east-1"), &["10.0.0.0/16"])];
        let host = "b.s3.us-east-1.amazonaws.com";
        assert_eq!(decide(host, &routes).unwrap(), vec![Candidate { route: 0, resolve: host.into() }, Candidate { route: 1, resolve: EP.into() }]);
        // The legacy global name is never carried by PrivateLink.
        assert_eq!(decide("b.s3.amazonaws.com", &routes).unwrap(), vec![Candidate { route: 0, resolve: "b.s3.amazonaws.com".into() }]);
        assert_eq!(decide("b.s3.amazonaws.com", &routes[1..]).unwrap_err().code(), "no_route_for_class");
        assert_eq!(decide("s3-fips.us-east-1.amazonaws.com", &routes[1..]).unwrap_err().code(), "no_route_for_class");
        // An interface route of another region does not carry us-east-1 names.
        let other = [iface("i", "vpce-1-2.s3.us-west-2.vpce.amazonaws.com", Some("us-west-2"), &["10.0.0.0/16"])];
        assert_eq!(decide("s3.us-east-1.amazonaws.com", &other).unwrap_err().code(), "no_route_for_class");
        // Endpoint-specific names resolve themselves and only interface routes carry them.
        let vpce = format!("bucket.{EP}");
        assert_eq!(decide(&vpce, &routes).unwrap(), vec![Candidate { route: 1, resolve: vpce.clone() }]);
        // Zonal names of the same endpoint too.
        let zonal = "bucket.vpce-0abc-1234-us-east-1a.s3.us-east-1.vpce.amazonaws.com";
        assert_eq!(decide(zonal, &routes).unwrap(), vec![Candidate { route: 1, resolve: zonal.into() }]);
        // Another endpoint's name (anyone's, whose addresses may overlap the route's CIDRs) is not
        // carried, nor a label that only starts like the configured one.
        for other in [
            "bucket.vpce-0fff-9999.s3.us-east-1.vpce.amazonaws.com",
            "bucket.vpce-0abc-12345.s3.us-east-1.vpce.amazonaws.com",
            "bucket.vpce-0abc-1234-us-east-1ab.s3.us-east-1.vpce.amazonaws.com",
        ] {
            let e = decide(other, &routes).unwrap_err();
            assert_eq!(e.code(), "no_route_for_class", "{other}");
            assert!(e.to_string().contains("no interface route is configured for"), "{e}");
        }
        // A route configured with a zonal name carries the regional name of its endpoint.
        let zr = [iface("z", "vpce-0abc-1234-us-east-1b.s3.us-east-1.vpce.amazonaws.com", Some("us-east-1"), &["10.0.0.0/16"])];
        assert_eq!(decide(&vpce, &zr).unwrap().len(), 1);
        // A multi-region access point needs an s3-global interface route.
        let mrap = [iface("m", "vpce-9-9.accesspoint.s3-global.vpce.amazonaws.com", None, &["10.1.0.0/16"])];
        assert_eq!(decide("x.mrap.accesspoint.s3-global.amazonaws.com", &mrap).unwrap().len(), 1);
    }

    #[test]
    fn each_route_carries_its_own_service_only() {
        const STS_EP: &str = "vpce-0sts-1.sts.us-east-1.vpce.amazonaws.com";
        let routes = [
            gw("s3", &["52.216.0.0/15"]),
            of("sts", iface("sts", STS_EP, Some("us-east-1"), &["10.0.0.0/16"])),
            of("dynamodb", gw("ddb", &["3.218.180.0/22"])),
        ];
        // STS through its interface route only, resolving the endpoint's name.
        assert_eq!(decide("sts.us-east-1.amazonaws.com", &routes).unwrap(), vec![Candidate { route: 1, resolve: STS_EP.into() }]);
        // DynamoDB (both its names) through its gateway route only, resolving the name itself.
        for host in ["dynamodb.us-east-1.amazonaws.com", "123456789012.ddb.us-east-1.amazonaws.com"] {
            assert_eq!(decide(host, &routes).unwrap(), vec![Candidate { route: 2, resolve: host.into() }], "{host}");
        }
        // S3 names never ride the STS or DynamoDB routes, and the endpoint-specific STS name
        // rides only its own route.
        assert_eq!(decide("b.s3.us-east-1.amazonaws.com", &routes).unwrap(), vec![Candidate { route: 0, resolve: "b.s3.us-east-1.amazonaws.com".into() }]);
        assert_eq!(decide(STS_EP, &routes).unwrap(), vec![Candidate { route: 1, resolve: STS_EP.into() }]);
        // A service no route carries, even one whose answers would fall inside the S3 route.
        let e = decide("kms.us-east-1.amazonaws.com", &routes).unwrap_err();
        assert_eq!(e.code(), "no_route_for_service");
        assert!(e.to_string().contains("service = \"kms\""), "{e}");
        let e = decide("sts.us-east-1.amazonaws.com", &routes[..1]).unwrap_err();
        assert_eq!(e.code(), "no_route_for_service");
        // The global STS name, another region's STS, and AWS names of no service.
        let e = decide("sts.amazonaws.com", &routes).unwrap_err();
        assert_eq!(e.code(), "global_sts");
        assert!(e.to_string().contains("AWS_STS_REGIONAL_ENDPOINTS=regional"), "{e}");
        assert_eq!(decide("sts.eu-west-1.amazonaws.com", &routes).unwrap_err().code(), "other_region");
        assert_eq!(decide("ec2-1-2-3-4.compute-1.amazonaws.com", &routes).unwrap_err().code(), "unknown_aws_name");
        // An STS interface route of another region does not carry us-east-1's STS.
        let west = [of("sts", iface("sts", "vpce-1-2.sts.us-west-2.vpce.amazonaws.com", Some("us-west-2"), &["10.0.0.0/16"]))];
        assert_eq!(decide("sts.us-east-1.amazonaws.com", &west).unwrap_err().code(), "no_route_for_service");
    }

    #[test]
    fn link_local_and_reserved_answers_are_never_dialled_even_inside_a_route() {
        // A route parsed elsewhere (tests build them directly) that would hold instance metadata.
        let routes = [gw("wide", &["128.0.0.0/1"]), gw("ll", &["169.254.0.0/16"])];
        let host = "b.s3.us-east-1.amazonaws.com";
        let cands = decide(host, &routes).unwrap();
        for bad in ["169.254.169.254", "240.1.2.3", "255.255.255.255"] {
            let e = choose(host, &cands, &[ans(host, &[bad])], &routes, 443, &[], "dns").unwrap_err();
            assert_eq!(e.code(), "outside_routes", "{bad}");
        }
    }

    #[test]
    fn choose_first_inside_address() {
        let routes = [gw("g", &["52.216.0.0/15"])];
        let host = "b.s3.us-east-1.amazonaws.com";
        let cands = decide(host, &routes).unwrap();
        // One answer outside, one inside: only the inside one is dialled.
        let got = choose(host, &cands, &[ans(host, &["3.3.3.3", "52.217.9.9"])], &routes, 443, &[], "dns").unwrap();
        assert_eq!(got.addr, Ipv4Addr::new(52, 217, 9, 9));
        assert_eq!(got.cidr.to_string(), "52.216.0.0/15");
        // All outside: refused, naming the addresses and the route.
        let err = choose(host, &cands, &[ans(host, &["3.3.3.3"])], &routes, 443, &[], "dns").unwrap_err();
        assert_eq!(err.code(), "outside_routes");
        assert!(err.to_string().contains("3.3.3.3") && err.to_string().contains("g [52.216.0.0/15]"));
        // No A records at all, or a DNS error: a DNS failure.
        let err = choose(host, &cands, &[ans(host, &[])], &routes, 443, &[], "127.0.0.1:53").unwrap_err();
        assert_eq!((err.code(), err.status()), ("dns_failed", 502));
        let err = choose(host, &cands, &[Answer { name: host.into(), result: Err("timed out".into()) }], &routes, 443, &[], "dns").unwrap_err();
        assert!(err.to_string().contains("timed out"));
    }

    #[test]
    fn interface_route_resolves_its_endpoint() {
        let routes = [gw("g", &["52.216.0.0/15"]), iface("i", EP, Some("us-east-1"), &["10.0.0.0/16"])];
        let host = "b.s3.us-east-1.amazonaws.com";
        let cands = decide(host, &routes).unwrap();
        // The public name resolves outside (no gateway reachable over VPN); the endpoint resolves inside.
        let got = choose(host, &cands, &[ans(host, &["3.3.3.3"]), ans(EP, &["10.0.5.6"])], &routes, 443, &[], "dns").unwrap();
        assert_eq!((got.addr, got.route, got.resolved.as_str()), (Ipv4Addr::new(10, 0, 5, 6), 1, EP));
        // The endpoint name answering outside the route's CIDRs is refused.
        let err = choose(host, &cands, &[ans(host, &["3.3.3.3"]), ans(EP, &["192.0.2.1"])], &routes, 443, &[], "dns").unwrap_err();
        assert_eq!(err.code(), "outside_routes");
    }

    #[test]
    fn never_dials_itself_or_unspecified() {
        let routes = [gw("lo", &["127.0.0.0/8", "0.0.0.0/8"])];
        let host = "s3.us-east-1.amazonaws.com";
        let cands = decide(host, &routes).unwrap();
        let own: Vec<SocketAddr> = vec!["127.0.0.1:3128".parse().unwrap()];
        let err = choose(host, &cands, &[ans(host, &["127.0.0.1"])], &routes, 3128, &own, "dns").unwrap_err();
        assert_eq!(err.code(), "self_connect");
        assert!(choose(host, &cands, &[ans(host, &["127.0.0.1"])], &routes, 443, &own, "dns").is_ok());
        let err = choose(host, &cands, &[ans(host, &["0.0.0.0"])], &routes, 443, &own, "dns").unwrap_err();
        assert_eq!(err.code(), "outside_routes");
    }
}
