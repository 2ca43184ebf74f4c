//! `vpcgate audit`: the AWS side of the private route, checked. Where vpcgate runs (IMDSv2, or
//! `--subnet`), then for each gateway route the prefix list, the subnet's effective route table
//! and its endpoint, for each interface route the endpoint, its addresses, security groups and
//! DNS names, and for each `--bucket` its policy. One `pass`/`WARN`/`FAIL` line per check, with
//! the fix; what could not be asked (a permission, IMDS) is a warning that names it.
//!
//! ```text
//! where it runs (IMDSv2 or --subnet) ............................. aws::locate
//! credentials (the standard chain), API endpoints ................. aws::credentials, aws::Aws
//! the EC2 answers, parsed ........................................ facts
//! the judgements (pure) ........................................... checks
//! ```

pub mod aws;
pub mod checks;
pub mod facts;

use crate::check::{line, Level, Line};
use crate::config::Loaded;
use crate::routes::{Route, RouteKind};
use aws::{ApiError, Aws};
use std::collections::HashMap;

/// What the command line asked for.
#[derive(Debug, Clone, Default)]
pub struct Args {
    pub subnet: Option<String>,
    pub region: Option<String>,
    pub buckets: Vec<String>,
    /// Let audit's own read-only calls take the public path when no route carries them.
    pub public_api: bool,
}

/// The audit's result: the lines, and where it ran.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub subnet: Option<String>,
    pub vpc: Option<String>,
    pub region: String,
    pub account: Option<String>,
    pub lines: Vec<Line>,
    pub failed: usize,
    pub warnings: usize,
    /// Gateway routes whose route table, list and endpoint hold, by route name.
    pub proofs: Vec<(String, checks::Proof)>,
}

/// The audit could not ask AWS at all (exit status 2): one sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CannotAsk(pub String);

fn filter(i: usize, name: &str, values: &[&str]) -> Vec<(String, String)> {
    let mut out = vec![(format!("Filter.{i}.Name"), name.to_string())];
    out.extend(values.iter().enumerate().map(|(j, v)| (format!("Filter.{i}.Value.{}", j + 1), v.to_string())));
    out
}

fn ids(prefix: &str, values: &[String]) -> Vec<(String, String)> {
    values.iter().enumerate().map(|(i, v)| (format!("{prefix}.{}", i + 1), v.clone())).collect()
}

/// A permission or answer problem becomes a warning naming it (an unreachable API is not: the
/// callers stop the audit with exit status 2 for it).
fn not_answered(out: &mut Vec<Line>, check: &str, e: &ApiError) {
    out.push(line(Level::Warn, check, format!("could not be checked: {e}")));
}

/// Run the audit. `env` is the process environment (endpoint overrides).
pub async fn run(l: &Loaded, args: &Args, env: &HashMap<String, String>) -> Result<Report, CannotAsk> {
    let mut out = Vec::new();
    // Where: IMDSv2 unless --subnet says.
    let located = if args.subnet.is_none() { Some(aws::locate().await) } else { None };
    let (mut subnet, mut vpc, mut account, mut address) = (args.subnet.clone(), None, None, None);
    let mut region = args.region.clone().unwrap_or_else(|| l.regions[0].clone());
    match located {
        Some(Ok(at)) => {
            out.push(line(
                Level::Pass,
                "where",
                format!("{} in {} ({}, account {}, from IMDSv2)", at.subnet, at.vpc, at.region, at.account.as_deref().unwrap_or("?")),
            ));
            subnet = Some(at.subnet);
            vpc = Some(at.vpc);
            if !at.region.is_empty() && args.region.is_none() {
                region = at.region;
            }
            account = at.account;
            address = at.address;
        }
        Some(Err(e)) => out.push(line(
            Level::Warn,
            "where",
            format!("{e}, so the subnet is unknown and the route table is not checked; on EC2 allow IMDSv2 (hop limit 2 in a container), elsewhere pass --subnet subnet-… --region …"),
        )),
        None => {}
    }
    let creds = aws::credentials(&region).await.map_err(CannotAsk)?;
    let api = Aws::new(l, &region, creds, env, args.public_api).map_err(CannotAsk)?;
    out.push(line(Level::Pass, "ec2 api", format!("{} in {region}", api.ec2_text())));

    // The first call tells whether AWS can be asked at all.
    if let (Some(s), None) = (&subnet, &vpc) {
        match api.ec2("DescribeSubnets", &filter(1, "subnet-id", &[s])).await {
            Err(ApiError::Unreachable(e)) => return Err(CannotAsk(format!("cannot ask the EC2 API: {e}"))),
            Err(e) => not_answered(&mut out, "where", &e),
            Ok(xml) => match facts::subnets(&xml) {
                Ok(v) if !v.is_empty() => {
                    out.push(line(Level::Pass, "where", format!("{s} in {} (from --subnet, {region})", v[0].vpc)));
                    vpc = Some(v[0].vpc.clone());
                }
                Ok(_) => out.push(line(Level::Fail, "where", format!("{s} does not exist in {region}; pass the subnet vpcgate runs in (and --region)"))),
                Err(e) => out.push(line(Level::Warn, "where", e.to_string())),
            },
        }
    }

    // The subnet's tables: its own association, and the VPC's main table.
    let mut tables = Vec::new();
    if let (Some(s), Some(v)) = (&subnet, &vpc) {
        let mut main = filter(1, "vpc-id", &[v]);
        main.extend(filter(2, "association.main", &["true"]));
        for params in [filter(1, "association.subnet-id", &[s]), main] {
            match api.ec2_pages("DescribeRouteTables", &params).await {
                Err(ApiError::Unreachable(e)) => return Err(CannotAsk(format!("cannot ask the EC2 API: {e}"))),
                Err(e) => {
                    not_answered(&mut out, "route tables", &e);
                    break;
                }
                Ok(pages) => {
                    for p in pages {
                        tables.extend(facts::route_tables(&p).map_err(|e| CannotAsk(e.to_string()))?);
                    }
                }
            }
        }
    }

    // The VPC's endpoints (and, below, interface endpoints named by ID).
    let mut endpoints = Vec::new();
    if let Some(v) = &vpc {
        match api.ec2_pages("DescribeVpcEndpoints", &filter(1, "vpc-id", &[v])).await {
            Err(ApiError::Unreachable(e)) => return Err(CannotAsk(format!("cannot ask the EC2 API: {e}"))),
            Err(e) => not_answered(&mut out, "vpc endpoints", &e),
            Ok(pages) => {
                for p in pages {
                    endpoints.extend(facts::endpoints(&p).map_err(|e| CannotAsk(e.to_string()))?);
                }
            }
        }
    }

    let mut proofs = Vec::new();
    for r in &l.routes {
        match r.kind {
            RouteKind::Gateway => {
                let route_region = r.region.clone().unwrap_or_else(|| region.clone());
                match gateway(&api, r, &route_region, subnet.as_deref(), vpc.as_deref(), &tables, &endpoints).await {
                    Err(ApiError::Unreachable(e)) => return Err(CannotAsk(format!("cannot ask the EC2 API: {e}"))),
                    Err(e) => not_answered(&mut out, &format!("prefix list {}", r.name), &e),
                    Ok((lines, proof)) => {
                        out.extend(lines);
                        if let Some(p) = proof {
                            proofs.push((r.name.clone(), p));
                        }
                    }
                }
            }
            RouteKind::Interface => match interface(&api, r, &endpoints, address).await {
                Err(ApiError::Unreachable(e)) => return Err(CannotAsk(format!("cannot ask the EC2 API: {e}"))),
                Err(e) => not_answered(&mut out, &format!("endpoint {}", r.name), &e),
                Ok(lines) => out.extend(lines),
            },
        }
    }

    let mut ours: Vec<String> = proofs.iter().map(|(_, p)| p.endpoint.clone()).collect();
    ours.extend(vpc.clone());
    for b in &args.buckets {
        match api.bucket_policy(b).await {
            Ok(Some(policy)) => out.extend(checks::bucket_policy(b, &policy, &ours)),
            Ok(None) => out.push(line(
                Level::Fail,
                format!("bucket {b}"),
                "has no bucket policy, so nothing stops access from outside the endpoint; add a Deny for s3:* with StringNotEquals aws:SourceVpce = your endpoint (or aws:SourceVpc)",
            )),
            Err(ApiError::Failed { code, .. }) if code == "NoSuchBucket" => {
                out.push(line(Level::Fail, format!("bucket {b}"), format!("does not exist in {region}; check the name and --region")))
            }
            Err(e) => not_answered(&mut out, &format!("bucket {b}"), &e),
        }
    }
    let failed = out.iter().filter(|l| l.level == Level::Fail).count();
    let warnings = out.iter().filter(|l| l.level == Level::Warn).count();
    Ok(Report { subnet, vpc, region, account, lines: out, failed, warnings, proofs })
}

/// The prefix list of a gateway route: by name in its region.
async fn find_list(api: &Aws, r: &Route, region: &str) -> Result<Option<(facts::PrefixList, Vec<ipnet::Ipv4Net>)>, ApiError> {
    let name = checks::gateway_list_name(region, &r.service);
    let xml = api.ec2("DescribeManagedPrefixLists", &filter(1, "prefix-list-name", &[&name])).await?;
    let Some(list) = facts::prefix_lists(&xml).map_err(|e| ApiError::Unreachable(e.to_string()))?.into_iter().next() else {
        return Ok(None);
    };
    let entries = list_entries(api, &list.id).await?;
    Ok(Some((list, entries)))
}

/// A prefix list's entries as written, every page.
pub async fn raw_entries(api: &Aws, id: &str) -> Result<Vec<String>, ApiError> {
    let mut out = Vec::new();
    for page in api.ec2_pages("GetManagedPrefixListEntries", &[("PrefixListId".into(), id.to_string())]).await? {
        out.extend(facts::prefix_list_entries(&page).map_err(|e| ApiError::Unreachable(e.to_string()))?);
    }
    Ok(out)
}

/// A prefix list's entries, every page, as CIDRs (an entry vpcgate could not route is an error).
pub async fn list_entries(api: &Aws, id: &str) -> Result<Vec<ipnet::Ipv4Net>, ApiError> {
    let mut out = Vec::new();
    for c in raw_entries(api, id).await? {
        out.push(crate::routes::parse_cidr(&c).map_err(|e| ApiError::Unreachable(format!("prefix list {id} {e}")))?);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

async fn gateway(
    api: &Aws,
    r: &Route,
    region: &str,
    subnet: Option<&str>,
    vpc: Option<&str>,
    tables: &[facts::RouteTable],
    endpoints: &[facts::Endpoint],
) -> Result<(Vec<Line>, Option<checks::Proof>), ApiError> {
    let found = find_list(api, r, region).await?;
    let list = found.as_ref().map(|(l, e)| (l, e.as_slice()));
    match (subnet, vpc) {
        (Some(s), Some(v)) => Ok(checks::gateway_route(r, region, list, checks::effective_table(tables, s, v), s, endpoints)),
        _ => {
            // Without a subnet only the list and the CIDRs can be judged.
            let (mut lines, _) = checks::gateway_route(r, region, list, None, "the subnet", endpoints);
            for l in lines.iter_mut().filter(|l| l.check.starts_with("route table")) {
                *l = line(Level::Warn, l.check.clone(), "not checked: the subnet is unknown (no IMDSv2); pass --subnet subnet-… to check the route table");
            }
            Ok((lines, None))
        }
    }
}

async fn interface(api: &Aws, r: &Route, vpc_endpoints: &[facts::Endpoint], host: Option<std::net::Ipv4Addr>) -> Result<Vec<Line>, ApiError> {
    let configured = r.follow.as_ref().and_then(|f| match &f.target {
        crate::routes::Target::Endpoint(id) => Some(id.clone()),
        crate::routes::Target::PrefixList(_) => None,
    });
    let Some(id) = configured.or_else(|| r.endpoint.as_deref().and_then(checks::endpoint_id_of)) else {
        return Ok(vec![line(
            Level::Warn,
            format!("endpoint {}", r.name),
            format!(
                "{} is not an endpoint-specific DNS name (vpce-ID-….vpce.amazonaws.com), so audit cannot tell which endpoint it is",
                r.endpoint.as_deref().unwrap_or("")
            ),
        )]);
    };
    let mut endpoint = vpc_endpoints.iter().find(|e| e.id == id).cloned();
    if endpoint.is_none() {
        let xml = api.ec2("DescribeVpcEndpoints", &ids("VpcEndpointId", std::slice::from_ref(&id))).await;
        endpoint = match xml {
            Ok(x) => facts::endpoints(&x).map_err(|e| ApiError::Unreachable(e.to_string()))?.into_iter().next(),
            // AWS answers an unknown ID with an error, not an empty set.
            Err(ApiError::Failed { code, .. }) if code.starts_with("InvalidVpcEndpointId") => None,
            Err(e) => return Err(e),
        };
    }
    let (mut enis, mut groups) = (Vec::new(), Vec::new());
    if let Some(e) = &endpoint {
        if !e.network_interfaces.is_empty() {
            for p in api.ec2_pages("DescribeNetworkInterfaces", &ids("NetworkInterfaceId", &e.network_interfaces)).await? {
                enis.extend(facts::network_interfaces(&p).map_err(|e| ApiError::Unreachable(e.to_string()))?);
            }
        }
        // The endpoint's own groups (its ENIs may list others).
        if !e.groups.is_empty() {
            for p in api.ec2_pages("DescribeSecurityGroups", &ids("GroupId", &e.groups)).await? {
                groups.extend(facts::security_groups(&p).map_err(|e| ApiError::Unreachable(e.to_string()))?);
            }
        }
    }
    Ok(checks::interface_route(r, &id, endpoint.as_ref(), &enis, &groups, host))
}
