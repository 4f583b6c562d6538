// Command node-agent is the part of a kubelet the sluice e2e suite needs, and no
// more: it registers a Node and keeps its Ready condition and Lease fresh, binds
// unscheduled Pods to it when asked to (--bind; otherwise kube-scheduler does), and
// runs each Pod's containers as plain processes in a network namespace of their own
// with a Pod IP on a bridge. It is not a container runtime: an image name only
// selects a binary the suite built (--image NAME=PATH), there is no filesystem
// isolation, and volumes are not mounted.
//
// It reports readiness from readinessProbe (httpGet, tcpSocket, exec), restarts
// containers as restartPolicy says, and on deletion runs preStop, sends SIGTERM,
// SIGKILL after terminationGracePeriodSeconds, and deletes the Pod object.
//
// SIGTERM or SIGINT stops every Pod process, deletes the network namespaces and the
// bridge, and exits. SIGSTOP freezes it (heartbeats stop: a lost node) and SIGCONT
// resumes it.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
)

type imageFlag map[string]string

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func (m imageFlag) String() string { return fmt.Sprint(map[string]string(m)) }
func (m imageFlag) Set(v string) error {
	name, path, ok := strings.Cut(v, "=")
	if !ok || name == "" || path == "" {
		return fmt.Errorf("want NAME=PATH, got %q", v)
	}
	m[name] = path
	return nil
}

type agent struct {
	client   kubernetes.Interface
	node     string
	images   map[string]string
	net      *network
	logDir   string
	mu       sync.Mutex
	pods     map[types.UID]*podRunner
	ctx      context.Context
	finished map[types.UID]bool // Pods whose runner finished (deleted or terminal)
}

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the cluster (admin)")
	node := flag.String("node-name", "e2e-agent", "name of the Node to register")
	subnet := flag.Int("subnet", 100, "Pod IPs are 10.244.SUBNET.2-254; the bridge has .1")
	tag := flag.String("tag", fmt.Sprint(os.Getpid()%100000), "short tag in netns and interface names (unique per agent)")
	bind := flag.Bool("bind", false, "bind unscheduled Pods to this Node (when no kube-scheduler runs)")
	logDir := flag.String("log-dir", os.TempDir(), "where container output goes (NS_POD_CONTAINER.log)")
	heartbeat := flag.Duration("heartbeat", 2*time.Second, "how often the Lease is renewed and the Node status posted")
	var localRanges listFlag
	flag.Var(&localRanges, "local-range", "CIDR the node netns accepts as local (LoadBalancer addresses, as kube-proxy would); repeatable")
	images := imageFlag{}
	flag.Var(images, "image", "NAME=PATH: containers whose image is NAME (any tag) run PATH; repeatable")
	flag.Parse()
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	log.SetPrefix("node-agent: ")

	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		log.Fatalf("kubeconfig: %v", err)
	}
	cfg.QPS, cfg.Burst = 100, 200
	client := kubernetes.NewForConfigOrDie(cfg)
	if *subnet < 1 || *subnet > 254 {
		log.Fatalf("--subnet must be 1..254")
	}
	netw, err := newNetwork(*tag, *subnet)
	if err != nil {
		log.Fatalf("network: %v", err)
	}
	if err := netw.addNode(localRanges); err != nil {
		netw.teardown()
		log.Fatalf("node netns: %v", err)
	}
	if err := forwardAPIServer(netw.nodeNS(), cfg.Host); err != nil {
		netw.teardown()
		log.Fatalf("%v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &agent{client: client, node: *node, images: images, net: netw, logDir: *logDir,
		pods: map[types.UID]*podRunner{}, ctx: ctx, finished: map[types.UID]bool{}}

	stop := make(chan os.Signal, 2)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	if err := a.registerNode(); err != nil {
		netw.teardown()
		log.Fatalf("register node: %v", err)
	}
	go a.heartbeat(*heartbeat)

	factory := informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", *node).String()
		}))
	pods := factory.Core().V1().Pods().Informer()
	_, _ = pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { a.sync(o.(*corev1.Pod)) },
		UpdateFunc: func(_, o any) { a.sync(o.(*corev1.Pod)) },
		DeleteFunc: func(o any) {
			if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = t.Obj
			}
			if p, ok := o.(*corev1.Pod); ok {
				a.gone(p)
			}
		},
	})
	if *bind {
		go a.binder()
	}
	factory.Start(ctx.Done())
	log.Printf("node %s ready (Pod IPs 10.244.%d.0/24 on bridge %s, hostNetwork Pods in %s at %s)",
		*node, *subnet, netw.bridge, netw.nodeNS(), netw.nodeIP())
	fmt.Println("node-agent ready") // the harness waits for this line

	<-stop
	log.Printf("stopping: killing every Pod process")
	cancel()
	a.mu.Lock()
	runners := make([]*podRunner, 0, len(a.pods))
	for _, r := range a.pods {
		runners = append(runners, r)
	}
	a.mu.Unlock()
	var wg sync.WaitGroup
	for _, r := range runners {
		wg.Add(1)
		go func() { defer wg.Done(); r.kill() }()
	}
	wg.Wait()
	netw.teardown()
	log.Printf("stopped")
}

// sync starts a runner for a new Pod of this Node, or hands the update to its runner.
func (a *agent) sync(p *corev1.Pod) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if r, ok := a.pods[p.UID]; ok {
		r.update(p)
		return
	}
	if a.finished[p.UID] {
		return
	}
	if p.DeletionTimestamp != nil {
		// Never started here (or the agent restarted): nothing to stop.
		go a.deleteNow(p)
		a.finished[p.UID] = true
		return
	}
	if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return
	}
	r := newPodRunner(a, p)
	a.pods[p.UID] = r
	go r.run()
}

// gone: the Pod object was deleted (force delete, or our own grace-0 delete).
func (a *agent) gone(p *corev1.Pod) {
	a.mu.Lock()
	r := a.pods[p.UID]
	a.mu.Unlock()
	if r != nil {
		r.forceStop()
	}
}

func (a *agent) done(uid types.UID) {
	a.mu.Lock()
	delete(a.pods, uid)
	a.finished[uid] = true
	a.mu.Unlock()
}

func (a *agent) deleteNow(p *corev1.Pod) {
	err := a.client.CoreV1().Pods(p.Namespace).Delete(context.Background(), p.Name,
		metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0),
			Preconditions: &metav1.Preconditions{UID: &p.UID}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		log.Printf("delete %s/%s: %v", p.Namespace, p.Name, err)
	}
}

func (a *agent) nodeStatus() corev1.NodeStatus {
	now := metav1.Now()
	cond := func(t corev1.NodeConditionType, s corev1.ConditionStatus, reason string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: t, Status: s, Reason: reason, LastHeartbeatTime: now, LastTransitionTime: now}
	}
	res := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("8"),
		corev1.ResourceMemory: resource.MustParse("16Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	return corev1.NodeStatus{
		Capacity:    res,
		Allocatable: res,
		Conditions: []corev1.NodeCondition{
			cond(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady"),
			cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory"),
			cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure"),
			cond(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID"),
		},
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: a.net.gateway},
			{Type: corev1.NodeHostName, Address: a.node},
		},
		NodeInfo: corev1.NodeSystemInfo{KubeletVersion: "v1.34.10", OperatingSystem: "linux",
			Architecture: "amd64", ContainerRuntimeVersion: "sluice-node-agent://0"},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: 0}},
	}
}

func (a *agent) registerNode() error {
	ctx := context.Background()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: a.node, Labels: map[string]string{
		"kubernetes.io/hostname": a.node, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}}}
	if _, err := a.client.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	if err := a.postNodeStatus(); err != nil {
		return err
	}
	return a.renewLease()
}

// postNodeStatus retries on conflict: the controllers annotate and taint the Node too.
func (a *agent) postNodeStatus() error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := a.client.CoreV1().Nodes().Get(context.Background(), a.node, metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Status = a.nodeStatus()
		_, err = a.client.CoreV1().Nodes().UpdateStatus(context.Background(), n, metav1.UpdateOptions{})
		return err
	})
}

func (a *agent) renewLease() error {
	leases := a.client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	now := metav1.NewMicroTime(time.Now())
	l, err := leases.Get(context.Background(), a.node, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		l = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: a.node, Namespace: corev1.NamespaceNodeLease},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: &a.node, LeaseDurationSeconds: ptr.To[int32](40), RenewTime: &now}}
		_, err = leases.Create(context.Background(), l, metav1.CreateOptions{})
		return err
	} else if err != nil {
		return err
	}
	l.Spec.HolderIdentity, l.Spec.RenewTime = &a.node, &now
	_, err = leases.Update(context.Background(), l, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) {
		return nil // renewed by the next tick
	}
	return err
}

// heartbeat renews the Lease and re-posts the Node status, as a kubelet does (faster:
// the tests shorten node-monitor-grace-period).
func (a *agent) heartbeat(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-t.C:
			if err := a.renewLease(); err != nil {
				log.Printf("lease: %v", err)
			}
			if err := a.postNodeStatus(); err != nil {
				log.Printf("node status: %v", err)
			}
		}
	}
}

// binder binds every unscheduled Pod to this Node (pods/binding), for clusters
// without kube-scheduler.
func (a *agent) binder() {
	factory := informers.NewSharedInformerFactoryWithOptions(a.client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", "").String()
		}))
	bind := func(o any) {
		p, ok := o.(*corev1.Pod)
		if !ok || p.Spec.NodeName != "" || p.DeletionTimestamp != nil {
			return
		}
		b := &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID},
			Target: corev1.ObjectReference{Kind: "Node", Name: a.node}}
		if err := a.client.CoreV1().Pods(p.Namespace).Bind(context.Background(), b, metav1.CreateOptions{}); err != nil &&
			!apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			log.Printf("bind %s/%s: %v", p.Namespace, p.Name, err)
		}
	}
	_, _ = factory.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: bind, UpdateFunc: func(_, o any) { bind(o) }})
	factory.Start(a.ctx.Done())
}
