package main

// The API server inside the node netns: hostNetwork Pods (MetalLB, sluice) reach it
// at the very address of the kubeconfig, 127.0.0.1:PORT, as a process on a real node
// reaches a local API server. A listener opened inside the node netns hands each
// connection to a dial from the agent's own (root) namespace; nothing listens on
// the root namespace's side.

import (
	"fmt"
	"io"
	"log"
	"net"
	"net/url"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// listenIn opens a TCP listener on addr inside the network namespace at nsPath. A
// socket stays in the namespace it was created in, so only this thread switches, and
// back at once.
func listenIn(nsPath, addr string) (net.Listener, error) {
	runtime.LockOSThread()
	orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer orig.Close()
	target, err := os.Open(nsPath)
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("setns %s: %v", nsPath, err)
	}
	l, lerr := net.Listen("tcp", addr)
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays locked, in the wrong namespace: Go ends it with this
		// goroutine rather than reuse it.
		return nil, fmt.Errorf("setns back: %v", err)
	}
	runtime.UnlockOSThread()
	return l, lerr
}

// forwardAPIServer serves the kubeconfig's loopback API server address inside netns
// ns. A non-loopback server needs no forwarding (the node netns routes to the host).
func forwardAPIServer(ns, server string) error {
	u, err := url.Parse(server)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.IsLoopback() || u.Port() == "" {
		return nil
	}
	l, err := listenIn("/run/netns/"+ns, u.Host)
	if err != nil {
		return fmt.Errorf("API server forwarder in %s: %v", ns, err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				log.Printf("API server forwarder: %v", err)
				return
			}
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp", u.Host)
				if err != nil {
					log.Printf("API server forwarder: %v", err)
					return
				}
				defer up.Close()
				done := make(chan struct{}, 2)
				go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
				go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
				<-done
			}()
		}
	}()
	return nil
}
