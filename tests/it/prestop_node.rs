//! `--prestop-allow-from node,$(NODE_IP)/32` admits the kubelet's preStop
//! hook on both common pod network models (issue 20, item 8), through the
//! real binary in network namespaces this test makes (traffic stays in
//! them):
//!
//! - a bridge (the `bridge` CNI plugin, flannel's cni0, kubenet's cbr0):
//!   the node reaches its pods from the bridge's address, 10.88.0.1,
//!   which is the pods' default gateway; the README's former recipe
//!   (`$(NODE_IP)/32` alone) refuses it, another pod on the bridge stays
//!   refused;
//! - a routed veth without an address on the node's side (Calico, the AWS
//!   VPC CNI): the pod has a /32 and a link-scope gateway 169.254.1.1, and
//!   the node reaches it from its own address, 192.0.2.2 (`NODE_IP`).

use crate::common;

use std::process::Command;
use std::time::Duration;

use crate::common::{scratch, wait_for, Proc};

const SOON: Duration = Duration::from_secs(30);

/// The node's own address (`status.hostIP`).
const NODE_IP: &str = "192.0.2.2";

/// The namespaces of one test, deleted on drop.
struct Network {
    prefix: String,
}

impl Network {
    fn name(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }

    /// Runs `script` (sh, `set -e`) with $N, $P, $O, $R naming the node,
    /// the bridge pod, another bridge pod and the routed pod.
    fn run(&self, script: &str) {
        let output = Command::new("sh")
            .args(["-ec", script])
            .env("N", self.name("node"))
            .env("P", self.name("pod"))
            .env("O", self.name("other"))
            .env("R", self.name("routed"))
            .output()
            .expect("sh runs");
        assert!(
            output.status.success(),
            "network setup failed ({}):\n{script}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// The node, a bridge with two pods, and a routed pod.
    fn build() -> Network {
        let network = Network {
            prefix: format!("drn{}", std::process::id()),
        };
        network.run(
            r#"
for ns in "$N" "$P" "$O" "$R"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
# The node: its own address on its uplink (a veth whose peer stays in
# the node's namespace: this kernel may have no dummy interfaces).
ip -n "$N" link add node0 type veth peer name uplink0
ip -n "$N" addr add 192.0.2.2/24 dev node0
ip -n "$N" link set uplink0 up
ip -n "$N" link set node0 up
# A bridge network: the bridge holds 10.88.0.1, the pods' gateway.
ip -n "$N" link add br0 type bridge
ip -n "$N" addr add 10.88.0.1/24 dev br0
ip -n "$N" link set br0 up
for pod in "$P:vp:10.88.0.5" "$O:vo:10.88.0.6"; do
    ns=${pod%%:*}; rest=${pod#*:}; veth=${rest%%:*}; ip=${rest#*:}
    ip -n "$N" link add "$veth" type veth peer name eth0 netns "$ns"
    ip -n "$N" link set "$veth" master br0 up
    ip -n "$ns" addr add "$ip/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route add default via 10.88.0.1
done
# A routed pod (Calico, AWS VPC CNI): a /32, a link-scope gateway
# 169.254.1.1 answered by the node's addressless veth (ee:ee:…).
ip -n "$N" link add vr type veth peer name eth0 netns "$R"
ip -n "$N" link set vr address ee:ee:ee:ee:ee:ee up
ip -n "$N" route add 10.1.2.3/32 dev vr scope link
ip -n "$R" addr add 10.1.2.3/32 dev eth0
ip -n "$R" link set eth0 up
ip -n "$R" route add 169.254.1.1 dev eth0 scope link
ip -n "$R" route add default via 169.254.1.1 dev eth0
ip -n "$R" neigh add 169.254.1.1 lladdr ee:ee:ee:ee:ee:ee dev eth0 nud permanent
"#,
        );
        network
    }

    /// drainit in `role`'s namespace, admin on port 9901 of every address,
    /// in front of a long sleep.
    fn drainit(&self, role: &str, allow_from: &str) -> Proc {
        let dir = scratch(&format!("prestop-node-{role}"));
        Proc::start(
            &dir,
            "ip",
            &[
                "netns",
                "exec",
                &self.name(role),
                common::drainit(),
                "--admin-listen",
                "0.0.0.0:9901",
                "--prestop-allow-from",
                allow_from,
                "--propagation-delay",
                "0s",
                "--",
                "sleep",
                "1000",
            ],
            &[],
        )
    }

    /// An HTTP GET from `role`'s namespace; the status code (0: none).
    fn get(&self, role: &str, url: &str) -> u16 {
        let output = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.name(role),
                "curl",
                "-s",
                "-o",
                "/dev/null",
            ])
            .args(["-w", "%{http_code}", "--max-time", "20", url])
            .output()
            .expect("curl runs");
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for role in ["node", "pod", "other", "routed"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.name(role)])
                .status();
        }
    }
}

#[test]
fn the_kubelet_is_admitted_on_a_bridge_and_on_a_routed_network() {
    let network = Network::build();
    let recipe = format!("node,{NODE_IP}/32");

    // The bridge: the README's former recipe refuses the node (403), the
    // new one admits it, and not the other pod on the same bridge.
    let former = network.drainit("pod", &format!("{NODE_IP}/32"));
    let live = "http://10.88.0.5:9901/live";
    assert!(
        wait_for(SOON, || network.get("node", live) == 200),
        "drainit did not come up in the bridge pod\n{}",
        former.report()
    );
    assert_eq!(
        network.get("node", "http://10.88.0.5:9901/prestop"),
        403,
        "the node reaches a bridge pod from the bridge's address, not NODE_IP\n{}",
        former.report()
    );
    drop(former);

    let mut bridged = network.drainit("pod", &recipe);
    assert!(
        wait_for(SOON, || network.get("node", live) == 200),
        "drainit with --prestop-allow-from {recipe} did not come up\n{}",
        bridged.report()
    );
    assert_eq!(
        network.get("other", "http://10.88.0.5:9901/prestop"),
        403,
        "another pod on the bridge must not drain this one\n{}",
        bridged.report()
    );
    assert_eq!(
        network.get("node", "http://10.88.0.5:9901/prestop"),
        200,
        "the kubelet (from the bridge's 10.88.0.1) must be admitted\n{}",
        bridged.report()
    );
    bridged.wait(SOON);
    assert!(
        bridged.stderr().contains("10.88.0.1"),
        "the log names the admitted gateway\n{}",
        bridged.report()
    );

    // The routed pod: the node comes from NODE_IP.
    let mut routed = network.drainit("routed", &recipe);
    assert!(
        wait_for(SOON, || network.get("node", "http://10.1.2.3:9901/live")
            == 200),
        "drainit did not come up in the routed pod\n{}",
        routed.report()
    );
    assert_eq!(
        network.get("node", "http://10.1.2.3:9901/prestop"),
        200,
        "the kubelet (from NODE_IP) must be admitted on a routed network\n{}",
        routed.report()
    );
    routed.wait(SOON);
}
