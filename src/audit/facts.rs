//! What AWS says, parsed: the EC2 Query API's XML answers (DescribeSubnets, DescribeRouteTables,
//! DescribeManagedPrefixLists, GetManagedPrefixListEntries, DescribeVpcEndpoints,
//! DescribeNetworkInterfaces, DescribeSecurityGroups) read into the few fields the checks use.
//!
//! Pure: text in, values out. Element names are matched by local name, so the namespace of the
//! API version does not matter; unknown elements are ignored, as the SDKs ignore them.

use ipnet::Ipv4Net;
use roxmltree::{Document, Node};
use std::net::Ipv4Addr;

/// An answer that is not the XML of its action.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the answer to {action} is not its XML ({why})")]
pub struct BadAnswer {
    pub action: String,
    pub why: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Subnet {
    pub id: String,
    pub vpc: String,
    pub cidr: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RouteTable {
    pub id: String,
    pub vpc: String,
    /// The VPC's main table: it serves every subnet without an association of its own.
    pub main: bool,
    /// Subnets explicitly associated with this table.
    pub subnets: Vec<String>,
    pub routes: Vec<TableRoute>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TableRoute {
    pub destination_cidr: Option<String>,
    pub destination_prefix_list: Option<String>,
    /// The target: `vpce-…` for a gateway endpoint, `igw-…`, `local`, or a NAT gateway's ID.
    pub target: Option<String>,
    /// `active`, or `blackhole` when the target is gone.
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PrefixList {
    pub id: String,
    pub name: String,
    pub version: Option<u64>,
    /// `AWS` for the lists AWS keeps (the gateway endpoints' lists), an account ID otherwise.
    pub owner: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Endpoint {
    pub id: String,
    /// `Gateway`, `Interface`, `GatewayLoadBalancer`, …
    pub kind: String,
    pub vpc: String,
    pub service: String,
    /// `available`, `pending`, `deleting`, …
    pub state: String,
    pub policy: Option<String>,
    pub route_tables: Vec<String>,
    pub network_interfaces: Vec<String>,
    pub groups: Vec<String>,
    pub dns_names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NetworkInterface {
    pub id: String,
    pub addresses: Vec<Ipv4Addr>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SecurityGroup {
    pub id: String,
    pub ingress: Vec<Permission>,
}

/// One ingress rule: protocol (`tcp`, `-1` for all), ports (absent: all), and its sources.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Permission {
    pub protocol: String,
    pub from_port: Option<i64>,
    pub to_port: Option<i64>,
    pub cidrs: Vec<Ipv4Net>,
    pub groups: Vec<String>,
    pub prefix_lists: Vec<String>,
}

impl Permission {
    /// Whether the rule admits TCP to `port`.
    pub fn admits_tcp(&self, port: u16) -> bool {
        let proto = self.protocol == "-1" || self.protocol.eq_ignore_ascii_case("tcp") || self.protocol == "6";
        let p = i64::from(port);
        proto && (self.protocol == "-1" || (self.from_port.unwrap_or(0) <= p && p <= self.to_port.unwrap_or(65535)))
    }
}

fn doc<'a>(action: &str, xml: &'a str) -> Result<Document<'a>, BadAnswer> {
    Document::parse(xml).map_err(|e| BadAnswer { action: action.into(), why: e.to_string() })
}

fn child<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    n.children().find(|c| c.is_element() && c.tag_name().name() == name)
}

fn text(n: Node<'_, '_>, name: &str) -> Option<String> {
    child(n, name).and_then(|c| c.text()).map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
}

/// The `<item>` children of the set `name` under `n`.
fn items<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Vec<Node<'a, 'i>> {
    child(n, name).map(|s| s.children().filter(|c| c.is_element() && c.tag_name().name() == "item").collect()).unwrap_or_default()
}

/// The texts of `field` in each item of the set `name`.
fn item_texts(n: Node<'_, '_>, set: &str, field: &str) -> Vec<String> {
    items(n, set).into_iter().filter_map(|i| text(i, field)).collect()
}

fn required(action: &str, n: Node<'_, '_>, name: &str) -> Result<String, BadAnswer> {
    text(n, name).ok_or_else(|| BadAnswer { action: action.into(), why: format!("an item has no {name}") })
}

/// The pagination token of a Describe* answer.
pub fn next_token(xml: &str) -> Option<String> {
    let d = Document::parse(xml).ok()?;
    text(d.root_element(), "nextToken")
}

pub fn subnets(xml: &str) -> Result<Vec<Subnet>, BadAnswer> {
    const A: &str = "DescribeSubnets";
    let d = doc(A, xml)?;
    items(d.root_element(), "subnetSet")
        .into_iter()
        .map(|i| Ok(Subnet { id: required(A, i, "subnetId")?, vpc: required(A, i, "vpcId")?, cidr: text(i, "cidrBlock") }))
        .collect()
}

pub fn route_tables(xml: &str) -> Result<Vec<RouteTable>, BadAnswer> {
    const A: &str = "DescribeRouteTables";
    let d = doc(A, xml)?;
    items(d.root_element(), "routeTableSet")
        .into_iter()
        .map(|t| {
            let assoc = items(t, "associationSet");
            Ok(RouteTable {
                id: required(A, t, "routeTableId")?,
                vpc: required(A, t, "vpcId")?,
                main: assoc.iter().any(|a| text(*a, "main").as_deref() == Some("true")),
                subnets: assoc.iter().filter_map(|a| text(*a, "subnetId")).collect(),
                routes: items(t, "routeSet")
                    .into_iter()
                    .map(|r| TableRoute {
                        destination_cidr: text(r, "destinationCidrBlock"),
                        destination_prefix_list: text(r, "destinationPrefixListId"),
                        target: ["gatewayId", "natGatewayId", "transitGatewayId", "networkInterfaceId", "vpcPeeringConnectionId", "instanceId"]
                            .iter()
                            .find_map(|f| text(r, f)),
                        state: text(r, "state").unwrap_or_else(|| "active".into()),
                    })
                    .collect(),
            })
        })
        .collect()
}

pub fn prefix_lists(xml: &str) -> Result<Vec<PrefixList>, BadAnswer> {
    const A: &str = "DescribeManagedPrefixLists";
    let d = doc(A, xml)?;
    items(d.root_element(), "prefixListSet")
        .into_iter()
        .map(|i| {
            Ok(PrefixList {
                id: required(A, i, "prefixListId")?,
                name: text(i, "prefixListName").unwrap_or_default(),
                version: text(i, "version").and_then(|v| v.parse().ok()),
                owner: text(i, "ownerId"),
            })
        })
        .collect()
}

/// GetManagedPrefixListEntries: the CIDRs as written (checked by [`crate::routes::parse_cidr`] later).
pub fn prefix_list_entries(xml: &str) -> Result<Vec<String>, BadAnswer> {
    const A: &str = "GetManagedPrefixListEntries";
    let d = doc(A, xml)?;
    Ok(item_texts(d.root_element(), "entrySet", "cidr"))
}

pub fn endpoints(xml: &str) -> Result<Vec<Endpoint>, BadAnswer> {
    const A: &str = "DescribeVpcEndpoints";
    let d = doc(A, xml)?;
    items(d.root_element(), "vpcEndpointSet")
        .into_iter()
        .map(|i| {
            Ok(Endpoint {
                id: required(A, i, "vpcEndpointId")?,
                kind: text(i, "vpcEndpointType").unwrap_or_default(),
                vpc: text(i, "vpcId").unwrap_or_default(),
                service: text(i, "serviceName").unwrap_or_default(),
                state: text(i, "state").unwrap_or_default(),
                policy: text(i, "policyDocument"),
                // Sets of plain values hold <item>TEXT</item>.
                route_tables: plain_items(i, "routeTableIdSet"),
                network_interfaces: plain_items(i, "networkInterfaceIdSet"),
                groups: item_texts(i, "groupSet", "groupId"),
                dns_names: item_texts(i, "dnsEntrySet", "dnsName"),
            })
        })
        .collect()
}

fn plain_items(n: Node<'_, '_>, set: &str) -> Vec<String> {
    items(n, set).into_iter().filter_map(|i| i.text()).map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect()
}

pub fn network_interfaces(xml: &str) -> Result<Vec<NetworkInterface>, BadAnswer> {
    const A: &str = "DescribeNetworkInterfaces";
    let d = doc(A, xml)?;
    items(d.root_element(), "networkInterfaceSet")
        .into_iter()
        .map(|i| {
            let mut addresses: Vec<Ipv4Addr> = item_texts(i, "privateIpAddressesSet", "privateIpAddress").iter().filter_map(|a| a.parse().ok()).collect();
            if let Some(a) = text(i, "privateIpAddress").and_then(|a| a.parse().ok()) {
                if !addresses.contains(&a) {
                    addresses.insert(0, a);
                }
            }
            Ok(NetworkInterface { id: required(A, i, "networkInterfaceId")?, addresses })
        })
        .collect()
}

pub fn security_groups(xml: &str) -> Result<Vec<SecurityGroup>, BadAnswer> {
    const A: &str = "DescribeSecurityGroups";
    let d = doc(A, xml)?;
    items(d.root_element(), "securityGroupInfo")
        .into_iter()
        .map(|g| {
            let ingress = items(g, "ipPermissions")
                .into_iter()
                .map(|p| Permission {
                    protocol: text(p, "ipProtocol").unwrap_or_else(|| "-1".into()),
                    from_port: text(p, "fromPort").and_then(|v| v.parse().ok()),
                    to_port: text(p, "toPort").and_then(|v| v.parse().ok()),
                    cidrs: item_texts(p, "ipRanges", "cidrIp").iter().filter_map(|c| c.parse::<Ipv4Net>().ok()).collect(),
                    groups: item_texts(p, "groups", "groupId"),
                    prefix_lists: item_texts(p, "prefixListIds", "prefixListId"),
                })
                .collect();
            Ok(SecurityGroup { id: required(A, g, "groupId")?, ingress })
        })
        .collect()
}

/// An error answer's code and message: EC2's `<Response><Errors><Error><Code>…` and S3's
/// `<Error><Code>…` alike (the first `Error` element).
pub fn error_code(xml: &str) -> Option<(String, String)> {
    let d = Document::parse(xml).ok()?;
    let e = d.descendants().find(|n| n.is_element() && n.tag_name().name() == "Error")?;
    Some((text(e, "Code")?, text(e, "Message").unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(name: &str) -> String {
        std::fs::read_to_string(format!("{}/src/audit/testdata/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    /// moto 5.2.1's answers, captured once from integration-tests/audit/moto_vpc.py's VPC.
    #[test]
    fn captured_answers_parse_into_the_fields_the_checks_read() {
        let tables = route_tables(&answer("DescribeRouteTables.xml")).unwrap();
        assert_eq!(tables[0].id, "rtb-32dd0c294363e80ce");
        assert!(!tables[0].main && !tables[0].subnets.is_empty());
        let r = tables[0].routes.iter().find(|r| r.destination_prefix_list.as_deref() == Some("pl-f92eb1002c1c438e1")).expect("the prefix-list route");
        assert_eq!((r.target.as_deref(), r.state.as_str()), (Some("vpce-3205b0dab86038927"), "active"));
        assert!(route_tables(&answer("DescribeRouteTables-main.xml")).unwrap()[0].main);
        assert_eq!(prefix_list_entries(&answer("GetManagedPrefixListEntries.xml")).unwrap(), ["52.216.0.0/15", "3.5.0.0/19", "54.231.0.0/16"]);
        let lists = prefix_lists(&answer("DescribeManagedPrefixLists.xml")).unwrap();
        assert_eq!((lists[0].name.as_str(), lists[0].owner.as_deref()), ("com.amazonaws.us-east-1.s3", Some("AWS")));
        let eps = endpoints(&answer("DescribeVpcEndpoints.xml")).unwrap();
        let gw = eps.iter().find(|e| e.kind == "Gateway").unwrap();
        assert_eq!((gw.id.as_str(), gw.state.as_str()), ("vpce-3205b0dab86038927", "available"));
        assert_eq!(gw.route_tables, ["rtb-32dd0c294363e80ce"]);
        assert!(gw.policy.as_deref().is_some_and(|p| p.contains("\"Principal\": \"*\"")));
        let iface = eps.iter().find(|e| e.kind == "Interface").unwrap();
        assert_eq!((iface.network_interfaces.len(), iface.groups.len(), iface.dns_names.len()), (1, 1, 1));
        let enis = network_interfaces(&answer("DescribeNetworkInterfaces.xml")).unwrap();
        assert_eq!(enis[0].addresses, [Ipv4Addr::new(10, 44, 121, 213)]);
        let groups = security_groups(&answer("DescribeSecurityGroups.xml")).unwrap();
        let rule = groups[0].ingress.iter().find(|p| p.cidrs.contains(&"10.0.0.0/16".parse().unwrap())).expect("the 443 rule");
        assert!(rule.admits_tcp(443) && !rule.admits_tcp(80));
        assert_eq!(subnets(&answer("DescribeSubnets.xml")).unwrap().len(), 1);
        assert_eq!(error_code(&answer("GetBucketPolicy-none.xml")).map(|(c, _)| c).as_deref(), Some("NoSuchBucketPolicy"));
        assert!(route_tables("<nope").is_err());
    }
}
