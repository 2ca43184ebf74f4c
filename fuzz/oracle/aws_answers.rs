//! The oracle of what vpcgate reads from AWS and from its own cache files: the EC2 Query answers
//! (`audit::facts`, XML), bucket and endpoint policies (`audit::checks`, JSON), prefix-list
//! sources and caches (`routes`, JSON). An answer is untrusted input too: a proxy pointed at a
//! hostile or broken endpoint (or a damaged cache) must say so, never panic, and never route a
//! CIDR its own rules refuse.
//!
//! The first byte picks the reader; the rest is the text. Seeds: the answers moto gave
//! (src/audit/testdata), the cache shape, ip-ranges.json.
#![allow(dead_code)]

use vpcgate::audit::{checks, facts};
use vpcgate::routes;

/// Every CIDR a route may hold passes the route rules again.
fn routable(cidrs: &[ipnet::Ipv4Net]) {
    for c in cidrs {
        assert_eq!(routes::parse_cidr(&c.to_string()).as_ref(), Ok(c), "a CIDR the route rules refuse was read: {c}");
    }
}

pub fn check_answer(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    match which % 12 {
        0 => drop(facts::subnets(&text)),
        1 => drop(facts::route_tables(&text)),
        2 => drop(facts::prefix_lists(&text)),
        3 => {
            if let Ok(entries) = facts::prefix_list_entries(&text) {
                for e in entries {
                    if let Ok(c) = routes::parse_cidr(&e) {
                        routable(&[c]);
                    }
                }
            }
        }
        4 => drop(facts::endpoints(&text)),
        5 => drop(facts::network_interfaces(&text)),
        6 => drop(facts::security_groups(&text)),
        7 => {
            drop(facts::error_code(&text));
            drop(facts::next_token(&text));
        }
        8 => match routes::parse_cache(&text) {
            Ok((fetched, cidrs)) => {
                assert!(!cidrs.is_empty());
                routable(&cidrs);
                // What is written back reads back the same.
                assert_eq!(routes::parse_cache(&routes::cache_text(&fetched, &cidrs)), Ok((fetched, cidrs)));
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        },
        9 => {
            for service in ["s3", "dynamodb", "sts"] {
                match routes::parse_cidr_source(&text, &["us-east-1".to_string()], service) {
                    Ok((cidrs, what)) => {
                        assert!(!cidrs.is_empty() && !what.is_empty());
                        routable(&cidrs);
                    }
                    Err(e) => assert!(!e.to_string().is_empty()),
                }
            }
        }
        10 => {
            for line in checks::bucket_policy("b", &text, &["vpce-0abc".to_string()]) {
                assert!(!line.detail.is_empty(), "a bucket-policy line without its sentence: {line:?}");
            }
        }
        _ => drop(checks::policy_allows_all(&text)),
    }
}
