//! Real Redis Sentinel and Redis Cluster deployments: three data nodes watched by three sentinels,
//! or a six-node cluster. Every process listens on its own free loopback port, runs in its own
//! directory without persistence and is killed on drop; every wait is bounded.

use std::collections::HashMap;
use std::fs::File;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use redis::IntoConnectionInfo;

use super::{Certs, PREFIX, TempDir, require_tool, wait_for};

/// The name the sentinels know the primary by.
pub const MASTER_NAME: &str = "harvest";
/// How long a primary may be silent before a sentinel holds it down.
pub const SENTINEL_DOWN_AFTER: Duration = Duration::from_millis(1000);
/// A sentinel that started a failover waits twice this before it may start another for the same
/// primary, so it bounds how soon a second failover can follow the first.
pub const SENTINEL_FAILOVER_TIMEOUT: Duration = Duration::from_millis(4000);
/// How long a cluster node may be silent before its peers fail it. Shorter timeouts fail over
/// sooner but flag healthy nodes on a loaded two-core machine.
pub const CLUSTER_NODE_TIMEOUT: Duration = Duration::from_millis(2000);

/// Bounds connecting to and hearing from one server, so that a paused node cannot stall a wait.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Bounds a server starting and a topology settling after start or after a failover.
const SETTLE: Duration = Duration::from_secs(30);
/// Bounds one blocking `redis-cli --cluster` command.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// One primary and two replicas, watched by three sentinels with a quorum of two.
pub struct Sentinels {
    /// The first is the primary the sentinels were started with.
    nodes: Vec<Server>,
    sentinels: Vec<Server>,
}

/// Passwords and TLS for [`Sentinels::start_with`]; `None` leaves that side open or in plain
/// text.
#[derive(Clone, Debug, Default)]
pub struct SentinelOptions {
    /// The data nodes' `requirepass`, also their `masterauth` and the sentinels' `auth-pass`.
    pub data_password: Option<String>,
    /// The sentinels' `requirepass`, which they also present to one another.
    pub sentinel_password: Option<String>,
    /// TLS only, for the data nodes and the sentinels alike: no plain port, and replication,
    /// the sentinels' links to the nodes and to one another over TLS too.
    pub tls: Option<TlsFiles>,
}

/// A server certificate and key, and the CA that signed them, which servers also trust.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// The server certificate of `certs`, which covers 127.0.0.1.
    pub fn server(certs: &Certs) -> TlsFiles {
        TlsFiles {
            ca: certs.ca.clone(),
            cert: certs.cert.clone(),
            key: certs.key.clone(),
        }
    }

    /// The same settings as redis.conf lines (a sentinel's) or flags (`--` in front).
    fn settings(&self, port: u16) -> Vec<(&'static str, String)> {
        let path = |p: &PathBuf| p.display().to_string();
        vec![
            ("port", "0".to_owned()),
            ("tls-port", port.to_string()),
            ("tls-cert-file", path(&self.cert)),
            ("tls-key-file", path(&self.key)),
            ("tls-ca-cert-file", path(&self.ca)),
            ("tls-auth-clients", "no".to_owned()),
            ("tls-replication", "yes".to_owned()),
        ]
    }

    fn certificates(&self) -> redis::TlsCertificates {
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(std::fs::read(&self.ca).expect("read the test CA")),
        }
    }
}

impl Sentinels {
    pub fn start() -> Sentinels {
        Sentinels::start_with(SentinelOptions::default())
    }

    pub fn start_with_password(data_password: Option<&str>) -> Sentinels {
        Sentinels::start_with(SentinelOptions {
            data_password: data_password.map(str::to_owned),
            ..SentinelOptions::default()
        })
    }

    /// Starts the data nodes, then the sentinels, and waits until every sentinel knows the
    /// primary, both replicas and the other two sentinels.
    pub fn start_with(options: SentinelOptions) -> Sentinels {
        on_free_ports(6, |ports| Sentinels::start_on(ports, &options))
    }

    /// [`Sentinels::start_with`] on these ports; `None` when another process took one.
    fn start_on(ports: &[u16], options: &SentinelOptions) -> Option<Sentinels> {
        let (node_ports, sentinel_ports) = ports.split_at(3);
        let password = options.data_password.as_deref();
        let tls = options.tls.as_ref();
        let primary = node_ports[0];
        let mut nodes = vec![data_node(primary, password, tls, &[])?];
        for &port in &node_ports[1..] {
            let replicaof = args(&["--replicaof", "127.0.0.1", &primary.to_string()]);
            nodes.push(data_node(port, password, tls, &replicaof)?);
        }
        // A sentinel reads the replicas from the primary's INFO at once, and then only every
        // 10 s: replicas linked before the sentinels start are known without that delay.
        for replica in &nodes[1..] {
            wait_for(
                &format!("replica {} to link to its primary", replica.port),
                SETTLE,
                || replica_linked(replica).then_some(()),
            );
        }
        let sentinels = sentinel_ports
            .iter()
            .map(|&port| sentinel(port, primary, options))
            .collect::<Option<_>>()?;
        let topology = Sentinels { nodes, sentinels };
        wait_for(
            "every sentinel to see the primary, two replicas and two other sentinels",
            SETTLE,
            || {
                topology
                    .sentinels
                    .iter()
                    .all(|sentinel| {
                        sentinel_master(sentinel).is_some_and(|master| {
                            let is = |name: &str, value: &str| {
                                master.get(name).map(String::as_str) == Some(value)
                            };
                            is("flags", "master")
                                && is("num-slaves", "2")
                                && is("num-other-sentinels", "2")
                        })
                    })
                    .then_some(())
            },
        );
        Some(topology)
    }

    /// Every sentinel's address, killed ones included, as an operator would configure them.
    pub fn sentinel_addrs(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|sentinel| format!("127.0.0.1:{}", sentinel.port))
            .collect()
    }

    /// [`Sentinels::sentinel_addrs`], comma separated.
    pub fn sentinel_list(&self) -> String {
        self.sentinel_addrs().join(",")
    }

    /// The data nodes' ports, the initial primary first.
    pub fn node_ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|node| node.port).collect()
    }

    /// The primary's port, as the first running sentinel reports it.
    pub fn primary_port(&self) -> u16 {
        reported_primary(self.running_sentinel()).expect("the sentinel to report the primary")
    }

    /// A connection to the data node on `port`, authenticated if the nodes require it.
    pub fn connection_to(&self, port: u16) -> redis::Connection {
        self.node(port)
            .connection()
            .unwrap_or_else(|e| panic!("connect to the data node on port {port}: {e}"))
    }

    /// A connection to sentinel `index`, authenticated if the sentinels require it.
    pub fn sentinel_connection(&self, index: usize) -> redis::Connection {
        self.sentinels[index]
            .connection()
            .unwrap_or_else(|e| panic!("connect to sentinel {index}: {e}"))
    }

    /// Has a sentinel fail the primary over, as an operator would, and returns the new primary.
    pub fn failover(&self) -> u16 {
        let old = self.primary_port();
        let sentinel = self.running_sentinel();
        redis::cmd("SENTINEL")
            .arg("FAILOVER")
            .arg(MASTER_NAME)
            .query::<()>(&mut sentinel.connection().expect("connect to a sentinel"))
            .expect("SENTINEL FAILOVER");
        self.wait_new_primary(old, SETTLE)
    }

    /// Waits until every running sentinel has finished failing over and reports the same
    /// primary other than `old_port`, and that node says it is a master; returns its port.
    pub fn wait_new_primary(&self, old_port: u16, timeout: Duration) -> u16 {
        wait_for(
            &format!("the sentinels to agree on a primary other than {old_port}"),
            timeout,
            || {
                let mut reports = self
                    .sentinels
                    .iter()
                    .filter(|sentinel| sentinel.is_running())
                    .map(settled_primary);
                let port = reports.next()??;
                if port == old_port || !reports.all(|report| report == Some(port)) {
                    return None;
                }
                let replication = replication(self.node(port))?;
                (field(&replication, "role") == Some("master")).then_some(port)
            },
        )
    }

    /// SIGKILLs the data node on `port`, as a crash would.
    pub fn kill_node(&mut self, port: u16) {
        self.node_mut(port).kill();
    }

    /// SIGSTOPs the data node on `port`: it keeps its connections but answers nothing.
    pub fn pause_node(&mut self, port: u16) {
        self.node_mut(port).pause();
    }

    pub fn resume_node(&mut self, port: u16) {
        self.node_mut(port).resume();
    }

    /// SIGKILLs sentinel `index`; [`Sentinels::sentinel_addrs`] still lists it.
    pub fn kill_sentinel(&mut self, index: usize) {
        self.sentinels[index].kill();
    }

    /// SIGSTOPs sentinel `index`: connections to it open (the kernel accepts them) but nothing
    /// is answered, as with a hung host. The other sentinels stand in for it.
    pub fn pause_sentinel(&mut self, index: usize) {
        self.sentinels[index].pause();
    }

    pub fn resume_sentinel(&mut self, index: usize) {
        self.sentinels[index].resume();
    }

    fn running_sentinel(&self) -> &Server {
        self.sentinels
            .iter()
            .find(|sentinel| sentinel.is_running())
            .expect("a running sentinel")
    }

    fn node(&self, port: u16) -> &Server {
        self.nodes
            .iter()
            .find(|node| node.port == port)
            .unwrap_or_else(|| panic!("no data node on port {port}"))
    }

    fn node_mut(&mut self, port: u16) -> &mut Server {
        self.nodes
            .iter_mut()
            .find(|node| node.port == port)
            .unwrap_or_else(|| panic!("no data node on port {port}"))
    }
}

fn sentinel(port: u16, primary: u16, options: &SentinelOptions) -> Option<Server> {
    let dir = TempDir::new("sentinel");
    let mut conf = format!(
        "bind 127.0.0.1\n\
         dir {dir}\n\
         sentinel monitor {MASTER_NAME} 127.0.0.1 {primary} 2\n\
         sentinel down-after-milliseconds {MASTER_NAME} {down_after}\n\
         sentinel failover-timeout {MASTER_NAME} {failover_timeout}\n",
        dir = dir.0.display(),
        down_after = SENTINEL_DOWN_AFTER.as_millis(),
        failover_timeout = SENTINEL_FAILOVER_TIMEOUT.as_millis(),
    );
    match &options.tls {
        // `tls-replication` makes the sentinel speak TLS to the nodes and to the other
        // sentinels, and announce its TLS port to them.
        Some(tls) => {
            for (name, value) in tls.settings(port) {
                conf.push_str(&format!("{name} {value}\n"));
            }
        }
        None => conf.push_str(&format!("port {port}\n")),
    }
    if let Some(password) = &options.data_password {
        conf.push_str(&format!("sentinel auth-pass {MASTER_NAME} {password}\n"));
    }
    if let Some(password) = &options.sentinel_password {
        conf.push_str(&format!("requirepass {password}\n"));
    }
    // In the sentinel's own directory: it rewrites the file with what it learns.
    let path = dir.0.join("sentinel.conf");
    std::fs::write(&path, conf).expect("write sentinel.conf");
    let args = vec![path.display().to_string(), "--sentinel".to_owned()];
    Server::spawn(
        port,
        options.sentinel_password.as_deref(),
        options.tls.as_ref(),
        dir,
        &args,
    )
}

fn sentinel_master(sentinel: &Server) -> Option<HashMap<String, String>> {
    redis::cmd("SENTINEL")
        .arg("MASTER")
        .arg(MASTER_NAME)
        .query(&mut sentinel.connection().ok()?)
        .ok()
}

/// The primary `sentinel` holds up, unless it is failing it over. The leader of a failover
/// already reports the promoted replica while it still reconfigures the others, and until it
/// is done it cannot vote on the next failover, which could then wait out
/// [`SENTINEL_FAILOVER_TIMEOUT`] twice.
fn settled_primary(sentinel: &Server) -> Option<u16> {
    let master = sentinel_master(sentinel)?;
    if master.get("flags")? != "master" {
        return None;
    }
    master.get("port")?.parse().ok()
}

fn reported_primary(sentinel: &Server) -> Option<u16> {
    let (_host, port): (String, u16) = redis::cmd("SENTINEL")
        .arg("GET-MASTER-ADDR-BY-NAME")
        .arg(MASTER_NAME)
        .query(&mut sentinel.connection().ok()?)
        .ok()?;
    Some(port)
}

/// Three primaries with one replica each, made by `redis-cli --cluster create`.
pub struct Cluster {
    nodes: Vec<ClusterNode>,
}

struct ClusterNode {
    server: Server,
    id: String,
    /// A slot the node served when it was killed or paused: once the cluster has failed it over,
    /// no view says any more which slots were its own.
    slot_when_stopped: Option<u16>,
}

impl Cluster {
    /// Starts six nodes, creates the cluster and waits until every node reports
    /// `cluster_state:ok`, three primaries serving slots and three replicas in sync.
    pub fn start() -> Cluster {
        require_tool("redis-cli", "redis-tools");
        on_free_ports(12, Cluster::start_on)
    }

    /// [`Cluster::start`] on these ports, six for data and six for the bus; `None` when
    /// another process took one.
    fn start_on(ports: &[u16]) -> Option<Cluster> {
        let (data_ports, bus_ports) = ports.split_at(6);
        let node_timeout = CLUSTER_NODE_TIMEOUT.as_millis().to_string();
        let servers: Vec<Server> = data_ports
            .iter()
            .zip(bus_ports)
            .map(|(&port, &bus_port)| {
                let cluster_args = args(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    // Free ports can lie above 55535, where the default bus port (port + 10000)
                    // does not exist.
                    "--cluster-port",
                    &bus_port.to_string(),
                    "--cluster-node-timeout",
                    &node_timeout,
                    // The default, said outright: reads fail too while any slot is uncovered.
                    "--cluster-allow-reads-when-down",
                    "no",
                ]);
                data_node(port, None, None, &cluster_args)
            })
            .collect::<Option<_>>()?;
        let mut create = args(&["--cluster", "create"]);
        create.extend(data_ports.iter().map(|port| format!("127.0.0.1:{port}")));
        create.extend(args(&["--cluster-replicas", "1", "--cluster-yes"]));
        RedisCli::spawn(&create).wait(CLI_TIMEOUT);
        let nodes = servers
            .into_iter()
            .map(|server| {
                let id = redis::cmd("CLUSTER")
                    .arg("MYID")
                    .query(&mut server.connection().expect("connect to a cluster node"))
                    .expect("CLUSTER MYID");
                ClusterNode {
                    server,
                    id,
                    slot_when_stopped: None,
                }
            })
            .collect();
        let cluster = Cluster { nodes };
        wait_for(
            "every node to report cluster_state:ok, three primaries and three synced replicas",
            SETTLE,
            || {
                cluster
                    .running()
                    .all(|server| settled(server) == Some(true))
                    .then_some(())
            },
        );
        Some(cluster)
    }

    /// Every node's address, comma separated, as an operator would list the seeds.
    pub fn seed_list(&self) -> String {
        self.node_ports()
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn node_ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|node| node.server.port).collect()
    }

    /// The ports of the primaries that serve slots and are not flagged failing, as a running
    /// node sees them.
    pub fn primaries(&self) -> Vec<u16> {
        self.ports_where(NodeEntry::is_primary)
    }

    /// The ports of the replicas not flagged failing, as a running node sees them.
    pub fn replicas(&self) -> Vec<u16> {
        self.ports_where(NodeEntry::is_replica)
    }

    /// A client seeded with every node, with bounded connect and response times.
    pub fn client(&self) -> redis::cluster::ClusterClient {
        let seeds = self
            .node_ports()
            .into_iter()
            .map(|port| ("127.0.0.1", port));
        redis::cluster::ClusterClient::builder(seeds)
            .connection_timeout(IO_TIMEOUT)
            .response_timeout(IO_TIMEOUT)
            .build()
            .expect("a cluster client")
    }

    pub fn connection(&self) -> redis::cluster::ClusterConnection {
        self.client()
            .get_connection()
            .expect("connect to the cluster")
    }

    /// A plain connection to the node on `port`, which answers only for its own slots.
    pub fn connection_to(&self, port: u16) -> redis::Connection {
        self.node(port)
            .server
            .connection()
            .unwrap_or_else(|e| panic!("connect to the cluster node on port {port}: {e}"))
    }

    /// Writes a proposal hash for `symbol`.
    pub fn hset(&self, symbol: &str, fields: &[(&str, &str)]) {
        redis::cmd("HSET")
            .arg(format!("{PREFIX}{symbol}"))
            .arg(fields)
            .query::<()>(&mut self.connection())
            .expect("HSET in the cluster");
    }

    /// Writes a proposal hash with `fields` for each symbol. The cluster pipeline splits the
    /// commands by node and sends each node its share in one round trip.
    pub fn fill(&self, symbols: &[String], fields: &[(&str, &str)]) {
        let mut pipe = redis::cluster::cluster_pipe();
        for symbol in symbols {
            pipe.hset_multiple(format!("{PREFIX}{symbol}"), fields)
                .ignore();
        }
        pipe.query::<()>(&mut self.connection())
            .expect("fill the cluster");
    }

    /// The port of the primary that serves `key` (a whole key, prefix included).
    pub fn slot_owner(&self, key: &str) -> u16 {
        let server = self.running().next().expect("a running cluster node");
        let mut connection = server.connection().expect("connect to a cluster node");
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut connection)
            .expect("CLUSTER KEYSLOT");
        cluster_nodes(&mut connection)
            .and_then(|view| owner(&view, slot))
            .unwrap_or_else(|| panic!("no primary serves slot {slot}"))
    }

    /// Moves `slots` slots from the primary on `from_port` to the one on `to_port`, and returns
    /// what `redis-cli` printed.
    pub fn reshard(&self, from_port: u16, to_port: u16, slots: usize) -> String {
        let output = self
            .reshard_in_background(&[from_port], to_port, slots)
            .wait(CLI_TIMEOUT);
        self.wait_agreement();
        output
    }

    /// Waits until every running node maps the slots to the same nodes. `redis-cli --cluster`
    /// refuses to reshard until they do, and right after a reshard gossip is still spreading it.
    pub fn wait_agreement(&self) {
        wait_for(
            "every running node to agree on which node serves which slots",
            SETTLE,
            || {
                let mut maps = self.running().map(|server| {
                    let mut map: Vec<(u16, Vec<(u16, u16)>)> =
                        cluster_nodes(&mut server.connection().ok()?)?
                            .into_iter()
                            .filter(|entry| !entry.slots.is_empty())
                            .map(|entry| (entry.port, entry.slots))
                            .collect();
                    map.sort_unstable();
                    Some(map)
                });
                let first = maps.next()??;
                maps.all(|map| map.as_ref() == Some(&first)).then_some(())
            },
        );
    }

    /// [`Cluster::reshard`] left running, for tests that act while slots migrate; the slots
    /// come from each of `from_ports` in proportion to what they hold.
    pub fn reshard_in_background(
        &self,
        from_ports: &[u16],
        to_port: u16,
        slots: usize,
    ) -> RedisCli {
        self.wait_agreement();
        let from: Vec<&str> = from_ports
            .iter()
            .map(|port| self.node(*port).id.as_str())
            .collect();
        RedisCli::spawn(&args(&[
            "--cluster",
            "reshard",
            &format!("127.0.0.1:{to_port}"),
            "--cluster-from",
            &from.join(","),
            "--cluster-to",
            &self.node(to_port).id,
            "--cluster-slots",
            &slots.to_string(),
            "--cluster-yes",
        ]))
    }

    /// Waits until every running replica has applied all that its primary had written when
    /// this was called: without it, a write acknowledged just before a kill can be lost.
    pub fn wait_replicated(&self) {
        let targets: Vec<(&Server, u64)> = self
            .running()
            .filter_map(|server| {
                let primary = field(&replication(server)?, "master_port")?.parse().ok()?;
                let written = replication(&self.node(primary).server)?;
                Some((server, field(&written, "master_repl_offset")?.parse().ok()?))
            })
            .collect();
        for (replica, offset) in targets {
            wait_for(
                &format!(
                    "replica {} to reach replication offset {offset}",
                    replica.port
                ),
                SETTLE,
                || {
                    let applied: u64 = field(&replication(replica)?, "slave_repl_offset")?
                        .parse()
                        .ok()?;
                    (applied >= offset).then_some(())
                },
            );
        }
    }

    /// SIGKILLs the node on `port`, as a crash would.
    pub fn kill_node(&mut self, port: u16) {
        self.note_slot(port);
        self.node_mut(port).server.kill();
    }

    /// SIGSTOPs the node on `port`: it keeps its connections but answers nothing, and once the
    /// node timeout passes the cluster fails it over.
    pub fn pause_node(&mut self, port: u16) {
        self.note_slot(port);
        self.node_mut(port).server.pause();
    }

    /// SIGCONTs the node on `port`; a primary that was failed over rejoins as a replica.
    pub fn resume_node(&mut self, port: u16) {
        self.node_mut(port).server.resume();
    }

    /// Waits until a replica has taken over the slots of the killed or paused primary on
    /// `dead_port` and every running node reports `cluster_state:ok` and agrees on the new owner;
    /// returns the new owner's port.
    pub fn wait_failover(&self, dead_port: u16, timeout: Duration) -> u16 {
        let slot = self
            .node(dead_port)
            .slot_when_stopped
            .unwrap_or_else(|| panic!("node {dead_port} served no slots when it was stopped"));
        wait_for(
            &format!("a replica to take over from {dead_port} and the cluster to be ok"),
            timeout,
            || {
                let mut owners = self.running().map(|server| {
                    let mut connection = server.connection().ok()?;
                    (cluster_state(&mut connection)? == "ok").then_some(())?;
                    owner(&cluster_nodes(&mut connection)?, slot)
                });
                let first = owners.next()??;
                (first != dead_port && owners.all(|port| port == Some(first))).then_some(first)
            },
        )
    }

    /// `CONFIG SET param value` on every running node, e.g. for `notify-keyspace-events`.
    pub fn config_set_all(&self, param: &str, value: &str) {
        for server in self.running() {
            redis::cmd("CONFIG")
                .arg("SET")
                .arg(param)
                .arg(value)
                .query::<()>(&mut server.connection().expect("connect to a cluster node"))
                .unwrap_or_else(|e| panic!("CONFIG SET {param} on port {}: {e}", server.port));
        }
    }

    fn running(&self) -> impl Iterator<Item = &Server> {
        self.nodes
            .iter()
            .map(|node| &node.server)
            .filter(|server| server.is_running())
    }

    /// `CLUSTER NODES` as the first running node that answers sees it.
    fn view(&self) -> Vec<NodeEntry> {
        self.running()
            .find_map(|server| cluster_nodes(&mut server.connection().ok()?))
            .expect("a running cluster node to answer CLUSTER NODES")
    }

    fn ports_where(&self, keep: impl Fn(&NodeEntry) -> bool) -> Vec<u16> {
        let mut ports: Vec<u16> = self
            .view()
            .iter()
            .filter(|entry| keep(entry))
            .map(|entry| entry.port)
            .collect();
        ports.sort_unstable();
        ports
    }

    fn note_slot(&mut self, port: u16) {
        let slot = self
            .view()
            .iter()
            .find(|entry| entry.port == port && entry.is_primary())
            .map(|entry| entry.slots[0].0);
        self.node_mut(port).slot_when_stopped = slot;
    }

    fn node(&self, port: u16) -> &ClusterNode {
        self.nodes
            .iter()
            .find(|node| node.server.port == port)
            .unwrap_or_else(|| panic!("no cluster node on port {port}"))
    }

    fn node_mut(&mut self, port: u16) -> &mut ClusterNode {
        self.nodes
            .iter_mut()
            .find(|node| node.server.port == port)
            .unwrap_or_else(|| panic!("no cluster node on port {port}"))
    }
}

/// Whether `server` reports `cluster_state:ok`, sees three healthy primaries and three healthy
/// replicas, and, if it is a replica, is linked to its primary.
fn settled(server: &Server) -> Option<bool> {
    let mut connection = server.connection().ok()?;
    let view = cluster_nodes(&mut connection)?;
    let replication = replication(server)?;
    let healthy = view.len() == 6
        && view.iter().all(|entry| entry.connected && !entry.failed())
        && view.iter().filter(|entry| entry.is_primary()).count() == 3
        && view.iter().filter(|entry| entry.is_replica()).count() == 3;
    let linked = field(&replication, "role") == Some("master")
        || field(&replication, "master_link_status") == Some("up");
    Some(healthy && linked && cluster_state(&mut connection)? == "ok")
}

/// One line of `CLUSTER NODES`.
struct NodeEntry {
    port: u16,
    flags: Vec<String>,
    connected: bool,
    /// Inclusive ranges; slots being imported or migrated are left out.
    slots: Vec<(u16, u16)>,
}

impl NodeEntry {
    /// Parses `<id> <ip:port@bus-port> <flags> <primary> <ping> <pong> <epoch> <link> <slot>...`.
    fn parse(line: &str) -> Option<NodeEntry> {
        let mut parts = line.split_whitespace();
        let address = parts.nth(1)?;
        let port = address
            .split('@')
            .next()?
            .rsplit(':')
            .next()?
            .parse()
            .ok()?;
        let flags = parts.next()?.split(',').map(str::to_owned).collect();
        let link = parts.nth(4)?;
        let slots = parts
            .filter(|slot| !slot.starts_with('['))
            .map(|range| {
                let (first, last) = range.split_once('-').unwrap_or((range, range));
                Some((first.parse().ok()?, last.parse().ok()?))
            })
            .collect::<Option<_>>()?;
        Some(NodeEntry {
            port,
            flags,
            connected: link == "connected",
            slots,
        })
    }

    fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    fn failed(&self) -> bool {
        self.has_flag("fail") || self.has_flag("fail?")
    }

    fn is_primary(&self) -> bool {
        self.has_flag("master") && !self.failed() && !self.slots.is_empty()
    }

    fn is_replica(&self) -> bool {
        self.has_flag("slave") && !self.failed()
    }

    fn serves(&self, slot: u16) -> bool {
        self.slots
            .iter()
            .any(|&(first, last)| (first..=last).contains(&slot))
    }
}

fn cluster_nodes(connection: &mut redis::Connection) -> Option<Vec<NodeEntry>> {
    let text: String = redis::cmd("CLUSTER").arg("NODES").query(connection).ok()?;
    text.lines().map(NodeEntry::parse).collect()
}

fn cluster_state(connection: &mut redis::Connection) -> Option<String> {
    let text: String = redis::cmd("CLUSTER").arg("INFO").query(connection).ok()?;
    field(&text, "cluster_state").map(str::to_owned)
}

/// The port of the healthy primary serving `slot` in `view`.
fn owner(view: &[NodeEntry], slot: u16) -> Option<u16> {
    view.iter()
        .find(|entry| entry.is_primary() && entry.serves(slot))
        .map(|entry| entry.port)
}

/// A `redis-cli` run, SIGKILLed on drop if still running. Its output goes to a file, since
/// `reshard` prints a line per slot, more than a pipe buffer holds.
pub struct RedisCli {
    command: String,
    child: Child,
    dir: TempDir,
}

impl RedisCli {
    fn spawn(args: &[String]) -> RedisCli {
        let dir = TempDir::new("redis-cli");
        let output = File::create(dir.0.join("output")).expect("redis-cli output file");
        let child = Command::new("redis-cli")
            .args(args)
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("redis-cli output file"))
            .stderr(output)
            .spawn()
            .expect("start redis-cli");
        RedisCli {
            command: format!("redis-cli {}", args.join(" ")),
            child,
            dir,
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// What it has printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("output")).unwrap_or_default()
    }

    /// Waits until it exits, fails the test unless it succeeded, and returns its output.
    pub fn wait(mut self, timeout: Duration) -> String {
        let status = wait_for(&self.command, timeout, || {
            self.child.try_wait().ok().flatten()
        });
        let output = self.output();
        assert!(
            status.success(),
            "{} exited with {status}:\n{output}",
            self.command
        );
        output
    }
}

impl Drop for RedisCli {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One redis-server process, data node or sentinel, SIGKILLed on drop.
struct Server {
    port: u16,
    password: Option<String>,
    tls: Option<TlsFiles>,
    child: Child,
    state: State,
    _dir: TempDir,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Running,
    Paused,
    Killed,
}

impl Server {
    /// Runs `redis-server args` in `dir` and waits until it answers PING; `None` when another
    /// process took `port` after it was found free, and this server, unable to listen, is gone
    /// (or another server answers there).
    fn spawn(
        port: u16,
        password: Option<&str>,
        tls: Option<&TlsFiles>,
        dir: TempDir,
        args: &[String],
    ) -> Option<Server> {
        require_tool("redis-server", "redis-server");
        let log_path = dir.0.join("server.log");
        let log = File::create(&log_path).expect("redis-server log file");
        let child = Command::new("redis-server")
            .args(args)
            .current_dir(&dir.0)
            .stdout(log.try_clone().expect("redis-server log file"))
            .stderr(log)
            .spawn()
            .expect("start redis-server");
        let mut server = Server {
            port,
            password: password.map(str::to_owned),
            tls: tls.cloned(),
            child,
            state: State::Running,
            _dir: dir,
        };
        // The process answering, or `None` when the port was taken: another process's socket
        // (a listener, or the local end of an outgoing connection) got it first.
        let answering: Option<u32> = wait_for(
            &format!("redis-server on port {port} to answer"),
            SETTLE,
            || {
                if let Ok(Some(status)) = server.child.try_wait() {
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    if log.contains("Address already in use") {
                        return Some(None);
                    }
                    panic!("redis-server on port {port} exited with {status}:\n{log}");
                }
                let info: String = redis::cmd("INFO")
                    .arg("server")
                    .query(&mut server.connection().ok()?)
                    .ok()?;
                field(&info, "process_id")?.parse().ok().map(Some)
            },
        );
        (answering == Some(server.child.id())).then_some(server)
    }

    fn connection(&self) -> redis::RedisResult<redis::Connection> {
        let mut settings = redis::RedisConnectionInfo::default();
        if let Some(password) = &self.password {
            settings = settings.set_password(password);
        }
        let client = match &self.tls {
            Some(tls) => {
                let addr = redis::ConnectionAddr::TcpTls {
                    host: "127.0.0.1".to_owned(),
                    port: self.port,
                    insecure: false,
                    tls_params: None,
                };
                let info = addr.into_connection_info()?.set_redis_settings(settings);
                redis::Client::build_with_tls(info, tls.certificates())?
            }
            None => {
                let info = ("127.0.0.1", self.port)
                    .into_connection_info()?
                    .set_redis_settings(settings);
                redis::Client::open(info)?
            }
        };
        let connection = client.get_connection_with_timeout(IO_TIMEOUT)?;
        connection.set_read_timeout(Some(IO_TIMEOUT))?;
        connection.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(connection)
    }

    fn is_running(&self) -> bool {
        self.state == State::Running
    }

    fn pause(&mut self) {
        self.signal("STOP", State::Paused);
    }

    fn resume(&mut self) {
        self.signal("CONT", State::Running);
    }

    fn signal(&mut self, name: &str, next: State) {
        // Once reaped, the process id may belong to some other process.
        assert_ne!(
            self.state,
            State::Killed,
            "redis-server on port {} was killed",
            self.port
        );
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(
            status.success(),
            "kill -{name} redis-server on port {}",
            self.port
        );
        self.state = next;
    }

    /// SIGKILL, which also ends a paused process, then reaps it.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.state = State::Killed;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A redis-server without persistence, on `port` (a TLS port with `tls`), with `extra` flags.
fn data_node(
    port: u16,
    password: Option<&str>,
    tls: Option<&TlsFiles>,
    extra: &[String],
) -> Option<Server> {
    let dir = TempDir::new("node");
    let mut all = args(&["--bind", "127.0.0.1"]);
    match tls {
        Some(tls) => {
            for (name, value) in tls.settings(port) {
                all.extend([format!("--{name}"), value]);
            }
        }
        None => all.extend(args(&["--port", &port.to_string()])),
    }
    all.extend(args(&["--save", "", "--appendonly", "no"]));
    // A primary otherwise waits 5 s for more replicas to share each full sync with.
    all.extend(args(&["--repl-diskless-sync-delay", "0"]));
    all.extend(["--dir".to_owned(), dir.0.display().to_string()]);
    if let Some(password) = password {
        // Every node may become a replica after a failover, so each gets `masterauth` too.
        all.extend(args(&["--requirepass", password, "--masterauth", password]));
    }
    all.extend_from_slice(extra);
    Server::spawn(port, password, tls, dir, &all)
}

fn replica_linked(replica: &Server) -> bool {
    replication(replica).is_some_and(|text| field(&text, "master_link_status") == Some("up"))
}

/// `INFO replication` of `server`.
fn replication(server: &Server) -> Option<String> {
    redis::cmd("INFO")
        .arg("replication")
        .query(&mut server.connection().ok()?)
        .ok()
}

/// The value of `name` in INFO-style `name:value` lines.
fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// What `start` makes on `n` free ports, tried again on others when a port was taken by another
/// process (another test's server) between being found free and being listened on.
fn on_free_ports<T>(n: usize, start: impl Fn(&[u16]) -> Option<T>) -> T {
    const ATTEMPTS: usize = 3;
    for _ in 0..ATTEMPTS {
        if let Some(started) = start(&free_ports(n)) {
            return started;
        }
    }
    panic!("{ATTEMPTS} times another process took one of the {n} free ports first");
}

/// `n` distinct ports that nothing listens on: all held at once, so no two coincide.
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free loopback port"))
        .collect();
    listeners
        .iter()
        .map(|listener| listener.local_addr().expect("a bound address").port())
        .collect()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|arg| arg.to_string()).collect()
}
