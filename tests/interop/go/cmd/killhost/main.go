// Command killhost runs several SFTPGo auth plugins side by side the way
// SFTPGo 2.7.5 starts each one: before every start it kills the first running
// process whose executable (/proc/<pid>/exe: absolute, symlinks resolved)
// equals the plugin's cmd as written (SFTPGo's internal/plugin killProcess,
// re-implemented here from its behaviour), then starts it with go-plugin,
// sftpgo/sdk's auth handshake and client, an empty environment, gRPC only and
// AutoMTLS. It restarts each plugin once (stop, killProcess, start), as SFTPGo
// does after a plugin exits, and after every start checks that every plugin
// still answers. With -canary PATH it asks the first plugin to read PATH
// (username "canary", password PATH) and reports the answer.
//
//	killhost [-timeout 180s] [-canary PATH] -- CMD [CMD...]
//
// It prints one JSON report; exit status 0 when every step passed, 1 if not,
// 2 on bad usage.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/sftpgo/sdk/plugin/auth"
)

type step struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

type kill struct {
	Cmd        string `json:"cmd"`
	MatchedPid int    `json:"matched_pid"`
	MatchedExe string `json:"matched_exe,omitempty"`
}

type report struct {
	OK     bool              `json:"ok"`
	Steps  []step            `json:"steps"`
	Kills  []kill            `json:"kills"`
	Pids   map[string][]int  `json:"pids"`
	Canary map[string]string `json:"canary,omitempty"`
}

// killProcess kills the first process whose executable is exactly processPath, as SFTPGo does.
func killProcess(processPath string) kill {
	k := kill{Cmd: processPath}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return k
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err != nil || exe != processPath {
			continue
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
		k.MatchedPid, k.MatchedExe = pid, exe
		return k
	}
	return k
}

type running struct {
	cmd    string
	client *plugin.Client
	auth   auth.Authenticator
}

func start(path string, logOut io.Writer) (*running, error) {
	cmd := exec.Command(path)
	cmd.Env = []string{}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  auth.Handshake,
		Plugins:          auth.PluginMap,
		Cmd:              cmd,
		SkipHostEnv:      true,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		Managed:          false,
		Logger:           hclog.New(&hclog.LoggerOptions{Name: "plugins.auth", Level: hclog.Debug, Output: logOut}),
	})
	rpc, err := client.Client()
	if err != nil {
		client.Kill()
		return nil, err
	}
	raw, err := rpc.Dispense(auth.PluginName)
	if err != nil {
		client.Kill()
		return nil, err
	}
	a, ok := raw.(auth.Authenticator)
	if !ok {
		client.Kill()
		return nil, fmt.Errorf("dispensed %T, not an auth.Authenticator", raw)
	}
	return &running{cmd: path, client: client, auth: a}, nil
}

func pidOf(r *running) int {
	if rc := r.client.ReattachConfig(); rc != nil {
		return rc.Pid
	}
	return 0
}

func main() {
	canary := flag.String("canary", "", "ask the first plugin to read this file")
	timeout := flag.Duration("timeout", 180*time.Second, "overall limit")
	flag.Parse()
	cmds := flag.Args()
	if len(cmds) == 0 {
		fmt.Fprintln(os.Stderr, "usage: killhost [-canary PATH] -- CMD [CMD...]")
		os.Exit(2)
	}
	rep := &report{OK: true, Pids: map[string][]int{}}
	add := func(name string, ok bool, detail string) {
		rep.Steps = append(rep.Steps, step{name, ok, detail})
		rep.OK = rep.OK && ok
	}
	plugins := make([]*running, len(cmds))
	checkAll := func(after string) {
		for i, p := range plugins {
			if p == nil {
				continue
			}
			user, err := p.auth.CheckUserAndPass("alice", "wonderland", "198.51.100.7", "SSH", []byte("{}"))
			name := fmt.Sprintf("%s: plugin %d answers", after, i)
			if err != nil {
				add(name, false, err.Error())
			} else {
				add(name, len(user) > 0, string(user))
			}
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		startOne := func(i int, what string) {
			rep.Kills = append(rep.Kills, killProcess(cmds[i]))
			p, err := start(cmds[i], os.Stderr)
			if err != nil {
				add(fmt.Sprintf("%s plugin %d", what, i), false, err.Error())
				return
			}
			plugins[i] = p
			rep.Pids[cmds[i]] = append(rep.Pids[cmds[i]], pidOf(p))
			add(fmt.Sprintf("%s plugin %d", what, i), true, cmds[i])
			checkAll(fmt.Sprintf("after %s %d", what, i))
		}
		for i := range cmds {
			startOne(i, "start")
		}
		for i := range cmds {
			if plugins[i] != nil {
				plugins[i].client.Kill()
				plugins[i] = nil
			}
			startOne(i, "restart")
		}
		if *canary != "" && plugins[0] != nil {
			user, err := plugins[0].auth.CheckUserAndPass("canary", *canary, "198.51.100.7", "SSH", []byte("{}"))
			rep.Canary = map[string]string{"user": string(user)}
			if err != nil {
				rep.Canary["error"] = err.Error()
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(*timeout):
		add("timeout", false, timeout.String())
	}
	for _, p := range plugins {
		if p != nil {
			p.client.Kill()
		}
	}
	out, _ := json.Marshal(rep)
	fmt.Println(string(out))
	if !rep.OK {
		os.Exit(1)
	}
}
