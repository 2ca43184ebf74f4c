// TEMPORARY compile placeholder: replaced by the real hello parser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHelloInfo { pub sni: Option<String>, pub legacy_version: u16, pub supported_versions: Vec<u16>, pub cipher_suites: Vec<u16>, pub alpn: Vec<String>, pub key_share_groups: Vec<u16> }
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHelloInfo { pub version: u16, pub cipher_suite: u16, pub has_key_share: bool, pub hello_retry: bool }
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelloError { Incomplete, NotTls(String), Malformed(String), TooLarge }
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelloRefusal { SniMissing, SniMismatch { sni: String, host: String }, ClientTlsTooOld { max_offered: u16 }, ClientNoForwardSecrecy, ServerTlsTooOld { version: u16 }, ServerNoForwardSecrecy { suite: u16 }, ServerNoKeyShare }
impl HelloRefusal { pub fn code(&self) -> &'static str { todo!() } }
impl std::fmt::Display for HelloRefusal { fn fmt(&self, _f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { todo!() } }
pub fn parse_client_hello(_b: &[u8]) -> Result<(ClientHelloInfo, usize), HelloError> { todo!() }
pub fn parse_server_hello(_b: &[u8]) -> Result<(ServerHelloInfo, usize), HelloError> { todo!() }
pub fn check_client_hello(_c: &ClientHelloInfo, _h: &str) -> Result<(), HelloRefusal> { todo!() }
pub fn check_server_hello(_s: &ServerHelloInfo) -> Result<(), HelloRefusal> { todo!() }
pub fn suite_name(_s: u16) -> String { todo!() }
pub fn version_name(_v: u16) -> &'static str { todo!() }
