package main

// What a container runs (image table, command, args, env with downward-API fieldRef
// and Secret/ConfigMap keys, $(VAR) expansion) and its readiness probes.

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// imageName strips registry, tag and digest: "registry/x/sluice-echo:v2" -> "sluice-echo".
func imageName(image string) string {
	name := image
	if i := strings.Index(name, "@"); i >= 0 {
		name = name[:i]
	}
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		name = name[:i]
	}
	return name[strings.LastIndex(name, "/")+1:]
}

// commandLine resolves the program, args and environment of a container (r.mu held).
// The image table gives the entrypoint; `command` replaces it (command[0] is looked up
// in the table, then on PATH), `args` follow, as in Kubernetes.
func (r *podRunner) commandLine(c corev1.Container) (string, []string, []string, error) {
	vars := map[string]string{}
	var env []string
	set := func(k, v string) {
		if _, dup := vars[k]; !dup {
			env = append(env, "")
		}
		vars[k] = v
		for i, e := range env {
			if e == "" || strings.HasPrefix(e, k+"=") {
				env[i] = k + "=" + v
				break
			}
		}
	}
	set("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	set("HOSTNAME", r.pod.Name)
	for _, e := range c.Env {
		v := e.Value
		if e.ValueFrom != nil {
			var err error
			if v, err = r.valueFrom(e.ValueFrom); err != nil {
				return "", nil, nil, fmt.Errorf("env %s: %w", e.Name, err)
			}
		} else {
			v = expand(v, vars)
		}
		set(e.Name, v)
	}
	var argv []string
	if len(c.Command) > 0 {
		argv = append(argv, c.Command...)
	} else {
		bin, ok := r.a.images[imageName(c.Image)]
		if !ok {
			return "", nil, nil, fmt.Errorf("image %q is not in the agent's image table", c.Image)
		}
		argv = append(argv, bin)
	}
	argv = append(argv, c.Args...)
	for i := range argv {
		argv[i] = expand(argv[i], vars)
	}
	prog := argv[0]
	if bin, ok := r.a.images[prog]; ok {
		prog = bin
	} else if !filepath.IsAbs(prog) {
		p, err := exec.LookPath(prog)
		if err != nil {
			return "", nil, nil, fmt.Errorf("command %q: %w", prog, err)
		}
		prog = p
	}
	return prog, argv[1:], env, nil
}

var varRef = regexp.MustCompile(`\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)`)

// expand substitutes $(VAR) with defined variables; $$ is a literal $; an undefined
// reference stays as written (Kubernetes' rules).
func expand(s string, vars map[string]string) string {
	return varRef.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		if v, ok := vars[m[2:len(m)-1]]; ok {
			return v
		}
		return m
	})
}

var fieldKey = regexp.MustCompile(`^metadata\.(labels|annotations)\['(.+)'\]$`)

func (r *podRunner) valueFrom(src *corev1.EnvVarSource) (string, error) {
	p := r.pod
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	switch {
	case src.FieldRef != nil:
		switch f := src.FieldRef.FieldPath; f {
		case "metadata.name":
			return p.Name, nil
		case "metadata.namespace":
			return p.Namespace, nil
		case "metadata.uid":
			return string(p.UID), nil
		case "spec.nodeName":
			return p.Spec.NodeName, nil
		case "spec.serviceAccountName":
			return p.Spec.ServiceAccountName, nil
		case "status.podIP", "status.podIPs":
			return r.ip, nil
		case "status.hostIP", "status.hostIPs":
			return r.a.net.gateway, nil
		default:
			if m := fieldKey.FindStringSubmatch(f); m != nil {
				if m[1] == "labels" {
					return p.Labels[m[2]], nil
				}
				return p.Annotations[m[2]], nil
			}
			return "", fmt.Errorf("fieldRef %q not supported", f)
		}
	case src.SecretKeyRef != nil:
		s, err := r.a.client.CoreV1().Secrets(p.Namespace).Get(ctx, src.SecretKeyRef.Name, metav1.GetOptions{})
		if err != nil {
			return "", err
		}
		v, ok := s.Data[src.SecretKeyRef.Key]
		if !ok {
			return "", fmt.Errorf("secret %s has no key %s", src.SecretKeyRef.Name, src.SecretKeyRef.Key)
		}
		return string(v), nil
	case src.ConfigMapKeyRef != nil:
		cm, err := r.a.client.CoreV1().ConfigMaps(p.Namespace).Get(ctx, src.ConfigMapKeyRef.Name, metav1.GetOptions{})
		if err != nil {
			return "", err
		}
		v, ok := cm.Data[src.ConfigMapKeyRef.Key]
		if !ok {
			return "", fmt.Errorf("configmap %s has no key %s", src.ConfigMapKeyRef.Name, src.ConfigMapKeyRef.Key)
		}
		return v, nil
	}
	return "", fmt.Errorf("unsupported valueFrom")
}

// port resolves a probe's int-or-name port against the container's ports.
func port(c corev1.Container, p intstr.IntOrString) (int, error) {
	if p.Type == intstr.Int {
		return p.IntValue(), nil
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	if n, err := strconv.Atoi(p.StrVal); err == nil {
		return n, nil
	}
	return 0, fmt.Errorf("no container port named %q", p.StrVal)
}

func (r *podRunner) httpGet(ctx context.Context, c *container, h *corev1.HTTPGetAction) bool {
	n, err := port(c.spec, h.Port)
	if err != nil {
		return false
	}
	host := h.Host
	if host == "" {
		host = r.ip
	}
	scheme := strings.ToLower(string(h.Scheme))
	if scheme == "" {
		scheme = "http"
	}
	path := h.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		fmt.Sprintf("%s://%s%s", scheme, net.JoinHostPort(host, strconv.Itoa(n)), path), nil)
	if err != nil {
		return false
	}
	req.Header.Set("User-Agent", "kube-probe/1.34")
	for _, hd := range h.HTTPHeaders {
		req.Header.Set(hd.Name, hd.Value)
	}
	client := http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 400
}

// probe runs one readiness probe attempt and posts the result.
func (r *podRunner) probe(c *container, p *corev1.Probe) {
	timeout := time.Duration(max(p.TimeoutSeconds, 1)) * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ok := false
	switch {
	case p.HTTPGet != nil:
		ok = r.httpGet(ctx, c, p.HTTPGet)
	case p.TCPSocket != nil:
		if n, err := port(c.spec, p.TCPSocket.Port); err == nil {
			host := p.TCPSocket.Host
			if host == "" {
				host = r.ip
			}
			var d net.Dialer
			if conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(n))); err == nil {
				conn.Close()
				ok = true
			}
		}
	case p.Exec != nil:
		r.mu.Lock()
		_, _, env, _ := r.commandLine(c.spec)
		r.mu.Unlock()
		cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", r.ns}, p.Exec.Command...)...)
		cmd.Env = env
		ok = cmd.Run() == nil
	}
	r.probes <- probeResult{c: c, ok: ok}
}

// probed applies a probe result with the probe's thresholds (r.mu held).
func (r *podRunner) probed(res probeResult) {
	c, p := res.c, res.c.spec.ReadinessProbe
	c.probing = false
	c.nextProbe = time.Now().Add(time.Duration(max(p.PeriodSeconds, 1)) * time.Second)
	if !c.running {
		return
	}
	if res.ok {
		c.succ, c.fail = c.succ+1, 0
		if c.succ >= max(p.SuccessThreshold, 1) {
			c.ready = true
		}
	} else {
		c.succ, c.fail = 0, c.fail+1
		if c.fail >= max(p.FailureThreshold, 1) {
			c.ready = false
		}
	}
}
