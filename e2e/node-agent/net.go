package main

// Pod networking: one bridge per agent with 10.244.SUBNET.1/24 on the host side, and
// per Pod a network namespace whose eth0 (one end of a veth pair, the other end on
// the bridge) has the Pod IP. Only test addresses inside namespaces we create.
//
// The node's own network namespace (what hostNetwork Pods share, as on a real node)
// is one more of these, at 10.244.SUBNET.254: the host's root namespace is never a
// Pod's, so nothing a Pod does (MetalLB's speaker answering ARP) can reach the
// machine's real interfaces.

import (
	"fmt"
	"os/exec"
	"strings"
	"sync"
)

type network struct {
	tag, bridge, gateway string
	subnet               int
	mu                   sync.Mutex
	used                 map[int]bool
	next                 int
}

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func newNetwork(tag string, subnet int) (*network, error) {
	n := &network{tag: tag, bridge: "slb" + tag, subnet: subnet, used: map[int]bool{}, next: 2,
		gateway: fmt.Sprintf("10.244.%d.1", subnet)}
	n.teardown() // whatever an earlier agent with this tag left
	for _, args := range [][]string{
		{"link", "add", n.bridge, "type", "bridge"},
		{"addr", "add", n.gateway + "/24", "dev", n.bridge},
		{"link", "set", n.bridge, "up"},
	} {
		if err := ipCmd(args...); err != nil {
			n.teardown()
			return nil, err
		}
	}
	return n, nil
}

// nodeOctet: the node netns's address, 10.244.SUBNET.254.
const nodeOctet = 254

func (n *network) nodeNS() string { return n.nsName(nodeOctet) }
func (n *network) nodeIP() string { return fmt.Sprintf("10.244.%d.%d", n.subnet, nodeOctet) }

// addNode creates the node netns. Its kernel answers ARP only for addresses on the
// asking interface (arp_ignore=1), so the addresses of localRanges (accepted as
// local, as kube-proxy makes a node accept its LoadBalancer addresses) are found
// on the bridge only through an ARP answer from a process there: MetalLB's speaker.
func (n *network) addNode(localRanges []string) error {
	n.mu.Lock()
	n.used[nodeOctet] = true
	n.mu.Unlock()
	if err := n.create(nodeOctet); err != nil {
		return err
	}
	ns := n.nodeNS()
	for _, k := range []string{"all", "default", "eth0"} {
		path := "/proc/sys/net/ipv4/conf/" + k + "/arp_ignore"
		if out, err := exec.Command("ip", "netns", "exec", ns, "sh", "-c", "echo 1 >"+path).CombinedOutput(); err != nil {
			return fmt.Errorf("arp_ignore in %s: %v: %s", ns, err, out)
		}
	}
	for _, r := range localRanges {
		if err := ipCmd("-n", ns, "route", "add", "local", r, "dev", "lo"); err != nil {
			return err
		}
	}
	return nil
}

func (n *network) nsName(octet int) string { return fmt.Sprintf("sluice-pod-%s-%d", n.tag, octet) }
func (n *network) hostIf(octet int) string { return fmt.Sprintf("slp%sh%d", n.tag, octet) }

// add creates a Pod's namespace and returns its name and IP.
func (n *network) add() (string, string, error) {
	n.mu.Lock()
	octet := 0
	for i := 0; i < 253; i++ {
		c := 2 + (n.next-2+i)%253
		if !n.used[c] {
			octet = c
			break
		}
	}
	if octet == 0 {
		n.mu.Unlock()
		return "", "", fmt.Errorf("no free Pod IP in 10.244.%d.0/24", n.subnet)
	}
	n.used[octet] = true
	n.next = octet + 1 // round robin: an IP is not reused at once
	n.mu.Unlock()
	if err := n.create(octet); err != nil {
		return "", "", err
	}
	return n.nsName(octet), fmt.Sprintf("10.244.%d.%d", n.subnet, octet), nil
}

// create makes netns number octet with eth0 = 10.244.SUBNET.octet on the bridge.
func (n *network) create(octet int) error {
	ns, host, peer := n.nsName(octet), n.hostIf(octet), fmt.Sprintf("slp%sc%d", n.tag, octet)
	ip := fmt.Sprintf("10.244.%d.%d", n.subnet, octet)
	steps := [][]string{
		{"netns", "add", ns},
		{"link", "add", host, "type", "veth", "peer", "name", peer},
		{"link", "set", peer, "netns", ns},
		{"link", "set", host, "master", n.bridge},
		{"link", "set", host, "up"},
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "link", "set", peer, "name", "eth0"},
		{"-n", ns, "addr", "add", ip + "/24", "dev", "eth0"},
		{"-n", ns, "link", "set", "eth0", "up"},
		{"-n", ns, "route", "add", "default", "via", n.gateway},
	}
	for _, s := range steps {
		if err := ipCmd(s...); err != nil {
			n.remove(ns, ip)
			return err
		}
	}
	return nil
}

// remove deletes a Pod's namespace (its processes must be gone) and frees its IP.
func (n *network) remove(ns, ip string) {
	var octet int
	fmt.Sscanf(ns, "sluice-pod-"+n.tag+"-%d", &octet)
	_ = ipCmd("netns", "del", ns)
	_ = ipCmd("link", "del", n.hostIf(octet))
	n.mu.Lock()
	delete(n.used, octet)
	n.mu.Unlock()
}

// teardown kills what still runs in this agent's namespaces, deletes them and the bridge.
func (n *network) teardown() {
	out, _ := exec.Command("ip", "netns", "list").Output()
	prefix := "sluice-pod-" + n.tag + "-"
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], prefix) {
			continue
		}
		if pids, err := exec.Command("ip", "netns", "pids", f[0]).Output(); err == nil {
			for _, p := range strings.Fields(string(pids)) {
				_ = exec.Command("kill", "-KILL", p).Run()
			}
		}
		var octet int
		fmt.Sscanf(f[0], prefix+"%d", &octet)
		_ = ipCmd("netns", "del", f[0])
		_ = ipCmd("link", "del", n.hostIf(octet))
	}
	_ = ipCmd("link", "del", n.bridge)
}
