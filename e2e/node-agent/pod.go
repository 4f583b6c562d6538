package main

// One runner per Pod: starts its containers in the Pod's network namespace, probes
// readiness, restarts per restartPolicy, reports status, and on deletion runs
// preStop, SIGTERM, then SIGKILL at the end of the grace period.

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

type container struct {
	spec      corev1.Container
	cmd       *exec.Cmd
	running   bool
	startedAt time.Time
	exitedAt  time.Time
	exitCode  int32
	signal    string
	restarts  int32
	backoff   time.Duration
	last      *corev1.ContainerStateTerminated
	ready     bool
	probing   bool
	nextProbe time.Time
	succ      int32
	fail      int32
	done      bool // exited and not to be restarted
	startErr  string
}

type probeResult struct {
	c  *container
	ok bool
}

type podRunner struct {
	a           *agent
	mu          sync.Mutex // guards pod and the containers' process fields
	pod         *corev1.Pod
	ns, ip      string
	hostNetwork bool // spec.hostNetwork (immutable): runs in the node netns
	containers  []*container
	wake        chan struct{}
	probes      chan probeResult
	force       chan struct{}
	forceOnce   sync.Once
	killOnce    sync.Once
	started     time.Time
	readySince  time.Time
	wasReady    bool
	posted      string
	postedReady bool
	// termination
	terminating bool
	terminated  chan struct{}
}

func newPodRunner(a *agent, p *corev1.Pod) *podRunner {
	r := &podRunner{a: a, pod: p.DeepCopy(), wake: make(chan struct{}, 1), probes: make(chan probeResult, 8),
		force: make(chan struct{}), terminated: make(chan struct{}), hostNetwork: p.Spec.HostNetwork}
	for _, c := range p.Spec.Containers {
		r.containers = append(r.containers, &container{spec: c})
	}
	return r
}

func (r *podRunner) key() string { return r.pod.Namespace + "/" + r.pod.Name }

func (r *podRunner) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *podRunner) update(p *corev1.Pod) {
	r.mu.Lock()
	r.pod = p.DeepCopy()
	r.mu.Unlock()
	r.poke()
}

// forceStop: the Pod object is gone; kill at once.
func (r *podRunner) forceStop() { r.forceOnce.Do(func() { close(r.force) }) }

// kill (agent shutdown): SIGKILL every process and wait for them.
func (r *podRunner) kill() {
	r.forceStop()
	r.mu.Lock()
	for _, c := range r.containers {
		if c.running && c.cmd != nil {
			_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		}
	}
	r.mu.Unlock()
	select {
	case <-r.terminated:
	case <-time.After(5 * time.Second):
	}
}

func (r *podRunner) run() {
	defer r.a.done(r.pod.UID)
	// kill() waits on this, whichever way the runner ends.
	defer r.killOnce.Do(func() { close(r.terminated) })
	ns, ip, err := r.a.net.nodeNS(), r.a.net.nodeIP(), error(nil)
	if !r.hostNetwork {
		ns, ip, err = r.a.net.add()
	}
	if err != nil {
		log.Printf("%s: network: %v", r.key(), err)
		return
	}
	r.ns, r.ip, r.started = ns, ip, time.Now()
	log.Printf("%s: Pod IP %s in netns %s", r.key(), ip, ns)
	r.mu.Lock()
	for _, c := range r.containers {
		r.start(c)
	}
	r.mu.Unlock()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-r.wake:
		case res := <-r.probes:
			r.mu.Lock()
			r.probed(res)
			r.mu.Unlock()
		case <-tick.C:
		case <-r.force:
			r.killAll()
			r.waitExited(5 * time.Second)
			r.cleanup()
			return
		}
		if r.step() {
			return
		}
	}
}

// step advances the Pod; true when the runner is finished.
func (r *podRunner) step() bool {
	r.mu.Lock()
	pod := r.pod
	now := time.Now()
	if pod.DeletionTimestamp != nil && !r.terminating {
		r.terminating = true
		grace := int64(30)
		if pod.DeletionGracePeriodSeconds != nil {
			grace = *pod.DeletionGracePeriodSeconds
		} else if pod.Spec.TerminationGracePeriodSeconds != nil {
			grace = *pod.Spec.TerminationGracePeriodSeconds
		}
		go r.terminate(time.Duration(grace) * time.Second)
	}
	policy := pod.Spec.RestartPolicy
	for _, c := range r.containers {
		if c.running || c.done || r.terminating {
			continue
		}
		restart := policy == corev1.RestartPolicyAlways || policy == "" ||
			(policy == corev1.RestartPolicyOnFailure && c.exitCode != 0)
		if !restart {
			c.done = true
			continue
		}
		if now.Sub(c.exitedAt) >= c.backoff {
			c.restarts++
			r.start(c)
		}
	}
	for _, c := range r.containers {
		if c.running && !c.probing && c.spec.ReadinessProbe != nil && !now.Before(c.nextProbe) {
			c.probing = true
			go r.probe(c, c.spec.ReadinessProbe)
		}
	}
	status := r.status(now)
	allDone := len(r.containers) > 0
	for _, c := range r.containers {
		allDone = allDone && c.done
	}
	r.mu.Unlock()

	select {
	case <-r.terminated:
		r.postStatus(status)
		r.a.deleteNow(pod)
		r.cleanup()
		return true
	default:
	}
	r.postStatus(status)
	if allDone && !r.terminating {
		// restartPolicy Never/OnFailure and everything exited: the Pod object stays
		// (Succeeded or Failed), its namespace goes.
		r.cleanup()
		return true
	}
	return false
}

func (r *podRunner) cleanup() {
	if r.hostNetwork {
		// The node netns is shared: it stays until the agent stops.
		log.Printf("%s: stopped (hostNetwork, in %s)", r.key(), r.ns)
		return
	}
	r.a.net.remove(r.ns, r.ip)
	log.Printf("%s: stopped, netns %s removed", r.key(), r.ns)
}

// start launches a container's process (r.mu held).
func (r *podRunner) start(c *container) {
	prog, args, env, err := r.commandLine(c.spec)
	if err == nil {
		logPath := filepath.Join(r.a.logDir, fmt.Sprintf("%s_%s_%s.log", r.pod.Namespace, r.pod.Name, c.spec.Name))
		var f *os.File
		f, err = os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err == nil {
			cmd := exec.Command("ip", append([]string{"netns", "exec", r.ns, prog}, args...)...)
			cmd.Env, cmd.Stdout, cmd.Stderr = env, f, f
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			if c.spec.WorkingDir != "" {
				cmd.Dir = c.spec.WorkingDir
			}
			err = cmd.Start()
			f.Close()
			if err == nil {
				// Without a readinessProbe a running container is ready.
				c.cmd, c.running, c.startedAt, c.ready, c.succ, c.fail, c.startErr = cmd, true, time.Now(), c.spec.ReadinessProbe == nil, 0, 0, ""
				c.nextProbe = c.startedAt
				if p := c.spec.ReadinessProbe; p != nil {
					c.nextProbe = c.startedAt.Add(time.Duration(p.InitialDelaySeconds) * time.Second)
				}
				log.Printf("%s: container %s started: %s %s (pid %d)", r.key(), c.spec.Name, prog, strings.Join(args, " "), cmd.Process.Pid)
				go r.wait(c, cmd)
				return
			}
		}
	}
	// Could not start: treat as an exit with code 128, restarted with backoff.
	log.Printf("%s: container %s: %v", r.key(), c.spec.Name, err)
	c.startErr = err.Error()
	c.exitedAt, c.exitCode = time.Now(), 128
	c.backoff = nextBackoff(c.backoff)
}

func nextBackoff(b time.Duration) time.Duration {
	// kubelet: 10 s doubling to 5 min; shorter here so tests see restarts quickly.
	if b == 0 {
		return time.Second
	}
	if b *= 2; b > 10*time.Second {
		b = 10 * time.Second
	}
	return b
}

func (r *podRunner) wait(c *container, cmd *exec.Cmd) {
	err := cmd.Wait()
	r.mu.Lock()
	code, sig := int32(0), ""
	if ee, ok := err.(*exec.ExitError); ok {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code, sig = 128+int32(ws.Signal()), ws.Signal().String()
		} else {
			code = int32(ee.ExitCode())
		}
	} else if err != nil {
		code = 128
	}
	if c.cmd == cmd {
		c.running, c.ready, c.exitedAt, c.exitCode, c.signal = false, false, time.Now(), code, sig
		reason := "Completed"
		if code != 0 {
			reason = "Error"
		}
		c.last = &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason,
			StartedAt: metav1.NewTime(c.startedAt), FinishedAt: metav1.NewTime(c.exitedAt),
			ContainerID: r.containerID(c)}
		// Backoff resets after 10 s of running, as kubelet's does after a while.
		if c.exitedAt.Sub(c.startedAt) > 10*time.Second {
			c.backoff = 0
		}
		c.backoff = nextBackoff(c.backoff)
		log.Printf("%s: container %s exited: code %d %s", r.key(), c.spec.Name, code, sig)
	}
	r.mu.Unlock()
	r.poke()
}

func (r *podRunner) containerID(c *container) string {
	return fmt.Sprintf("sluice://%s/%s/%d", r.pod.UID, c.spec.Name, c.restarts)
}

func (r *podRunner) killAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.containers {
		if c.running {
			_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		}
	}
}

func (r *podRunner) anyRunning() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.containers {
		if c.running {
			return true
		}
	}
	return false
}

func (r *podRunner) waitExited(limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for r.anyRunning() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// terminate: preStop hooks (in parallel), SIGTERM, SIGKILL once the grace period
// (which the hooks count against, as in kubelet) is over.
func (r *podRunner) terminate(grace time.Duration) {
	defer r.killOnce.Do(func() { close(r.terminated); r.poke() })
	deadline := time.Now().Add(grace)
	log.Printf("%s: terminating (grace %s)", r.key(), grace)
	var wg sync.WaitGroup
	r.mu.Lock()
	for _, c := range r.containers {
		if c.running && c.spec.Lifecycle != nil && c.spec.Lifecycle.PreStop != nil {
			wg.Add(1)
			go func(c *container, h *corev1.LifecycleHandler) {
				defer wg.Done()
				r.preStop(c, h, deadline)
			}(c, c.spec.Lifecycle.PreStop)
		}
	}
	r.mu.Unlock()
	hooks := make(chan struct{})
	go func() { wg.Wait(); close(hooks) }()
	select {
	case <-hooks:
	case <-time.After(time.Until(deadline)):
	case <-r.force:
	}
	r.mu.Lock()
	for _, c := range r.containers {
		if c.running {
			_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGTERM)
		}
	}
	r.mu.Unlock()
	log.Printf("%s: SIGTERM sent", r.key())
	for r.anyRunning() && time.Now().Before(deadline) {
		select {
		case <-r.force:
			deadline = time.Now()
		case <-time.After(20 * time.Millisecond):
		}
	}
	if r.anyRunning() {
		log.Printf("%s: grace period over: SIGKILL", r.key())
		r.killAll()
		r.waitExited(5 * time.Second)
	}
}

func (r *podRunner) preStop(c *container, h *corev1.LifecycleHandler, deadline time.Time) {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	switch {
	case h.Exec != nil:
		r.mu.Lock()
		_, _, env, _ := r.commandLine(c.spec)
		r.mu.Unlock()
		cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", r.ns}, h.Exec.Command...)...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		log.Printf("%s: preStop exec %v: err=%v %s", r.key(), h.Exec.Command, err, strings.TrimSpace(string(out)))
	case h.HTTPGet != nil:
		ok := r.httpGet(ctx, c, h.HTTPGet)
		log.Printf("%s: preStop httpGet %s: ok=%v", r.key(), h.HTTPGet.Path, ok)
	case h.Sleep != nil:
		log.Printf("%s: preStop sleep %ds", r.key(), h.Sleep.Seconds)
		select {
		case <-time.After(time.Duration(h.Sleep.Seconds) * time.Second):
		case <-ctx.Done():
		}
	}
}

// status renders the Pod status from the runner's state (r.mu held).
func (r *podRunner) status(now time.Time) corev1.PodStatus {
	allReady, anyRunning, anyFailed := len(r.containers) > 0, false, false
	var cs []corev1.ContainerStatus
	for _, c := range r.containers {
		st := corev1.ContainerStatus{Name: c.spec.Name, Image: c.spec.Image,
			ImageID: "sluice-node-agent://" + c.spec.Image, RestartCount: c.restarts,
			Ready: c.running && c.ready, Started: ptr.To(c.running), ContainerID: r.containerID(c)}
		switch {
		case c.running:
			st.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(c.startedAt)}
			anyRunning = true
		case c.done || r.terminating:
			if c.last != nil {
				st.State.Terminated = c.last.DeepCopy()
			} else {
				st.State.Terminated = &corev1.ContainerStateTerminated{ExitCode: c.exitCode, Reason: "Error", Message: c.startErr}
			}
		default:
			reason := "CrashLoopBackOff"
			if c.startErr != "" {
				reason = "RunContainerError"
			}
			st.State.Waiting = &corev1.ContainerStateWaiting{Reason: reason, Message: c.startErr}
		}
		if c.last != nil && !(st.State.Terminated != nil) {
			st.LastTerminationState.Terminated = c.last.DeepCopy()
		}
		if c.exitCode != 0 && !c.running {
			anyFailed = true
		}
		allReady = allReady && st.Ready
		cs = append(cs, st)
	}
	if allReady != r.wasReady || r.readySince.IsZero() {
		r.wasReady, r.readySince = allReady, now
	}
	cond := func(t corev1.PodConditionType, ok bool, since time.Time) corev1.PodCondition {
		s := corev1.ConditionFalse
		if ok {
			s = corev1.ConditionTrue
		}
		return corev1.PodCondition{Type: t, Status: s, LastTransitionTime: metav1.NewTime(since.Truncate(time.Second))}
	}
	phase := corev1.PodRunning
	allDone := true
	for _, c := range r.containers {
		allDone = allDone && (c.done || (r.terminating && !c.running))
	}
	if allDone && !anyRunning {
		phase = corev1.PodSucceeded
		if anyFailed {
			phase = corev1.PodFailed
		}
	}
	start := metav1.NewTime(r.started)
	return corev1.PodStatus{
		Phase:  phase,
		HostIP: r.a.net.gateway, HostIPs: []corev1.HostIP{{IP: r.a.net.gateway}},
		PodIP: r.ip, PodIPs: []corev1.PodIP{{IP: r.ip}},
		StartTime: &start,
		Conditions: []corev1.PodCondition{
			cond(corev1.PodReadyToStartContainers, true, r.started),
			cond(corev1.PodInitialized, true, r.started),
			cond(corev1.ContainersReady, allReady, r.readySince),
			cond(corev1.PodReady, allReady, r.readySince),
			cond(corev1.PodScheduled, true, r.started),
		},
		ContainerStatuses: cs,
	}
}

func (r *podRunner) postStatus(s corev1.PodStatus) {
	body, _ := json.Marshal(map[string]any{"status": s})
	ready := false
	for _, c := range s.Conditions {
		ready = ready || (c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue)
	}
	// Someone else (node-lifecycle marking Pods NotReady on a lost node) may have changed
	// the Ready condition: post again whenever the object disagrees with us.
	r.mu.Lock()
	drift := false
	for _, c := range r.pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			drift = (c.Status == corev1.ConditionTrue) != ready
		}
	}
	r.mu.Unlock()
	if string(body) == r.posted && !drift {
		return
	}
	_, err := r.a.client.CoreV1().Pods(r.pod.Namespace).Patch(context.Background(), r.pod.Name,
		types.StrategicMergePatchType, body, metav1.PatchOptions{}, "status")
	if err != nil {
		if !apierrors.IsNotFound(err) {
			log.Printf("%s: status: %v", r.key(), err)
		}
		return
	}
	r.posted = string(body)
	if ready != r.postedReady {
		// The e2e tests read this line to time Pod Ready -> first request routed.
		log.Printf("%s: Ready=%v posted at %s", r.key(), ready, time.Now().UTC().Format(time.RFC3339Nano))
		r.postedReady = ready
	}
}
