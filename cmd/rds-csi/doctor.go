package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"syscall"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/srvlab/rds-csi/pkg/doctor"
	"github.com/srvlab/rds-csi/pkg/driver"
	"github.com/srvlab/rds-csi/pkg/rds"
)

// doctorOptions are the flags of `rds-csi doctor`: the RDS connection flags of the controller,
// where Kubernetes is, and what to do.
type doctorOptions struct {
	options
	output         string
	cleanup        bool
	yes            bool
	minAge         time.Duration
	timeout        time.Duration
	snapshotPrefix string
	volumePrefix   string
}

func (o *doctorOptions) register(fs *flag.FlagSet) {
	o.registerRDS(fs)
	fs.StringVar(&o.driverName, "driver-name", driver.DefaultDriverName, "CSI driver name whose volumes to look at")
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig; empty means in-cluster config in a pod, else $KUBECONFIG or ~/.kube/config")
	fs.StringVar(&o.output, "output", "table", "table (for people) or json (for scripts)")
	fs.BoolVar(&o.cleanup, "cleanup", false, "remove orphan disks and files older than --min-age that nothing in Kubernetes names (a dry run unless --yes)")
	fs.BoolVar(&o.yes, "yes", false, "with --cleanup: really remove")
	fs.DurationVar(&o.minAge, "min-age", doctor.DefaultMinAge, "with --cleanup: only orphans at least this old (by the RDS's clock) are removed, so that a volume being created is never raced")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "give up after this long")
	fs.StringVar(&o.snapshotPrefix, "snapshot-name-prefix", "snapshot", "the csi-snapshotter's --snapshot-name-prefix (to recognise snapshots being taken)")
	fs.StringVar(&o.volumePrefix, "volume-name-prefix", "pvc", "the csi-provisioner's --volume-name-prefix (to recognise volumes being created)")
}

func (o *doctorOptions) validate() error {
	if _, err := o.validateRDS(); err != nil {
		return err
	}
	switch o.output {
	case "table", "json":
	default:
		return fmt.Errorf("--output must be table or json, not %q", o.output)
	}
	if o.yes && !o.cleanup {
		return errors.New("--yes is for --cleanup")
	}
	if o.minAge <= 0 {
		return fmt.Errorf("--min-age must be positive, not %v", o.minAge)
	}
	if o.timeout <= 0 {
		return fmt.Errorf("--timeout must be positive, not %v", o.timeout)
	}
	return nil
}

// doctorMain runs `rds-csi doctor ARGS` and returns its exit status: 0 when nothing needs
// action, 1 when something does, 2 when it could not look (RDS unreachable, API error, bad flags).
func doctorMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("rds-csi doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	klog.InitFlags(fs)
	_ = fs.Set("v", "0")
	var o doctorOptions
	o.register(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: rds-csi doctor [flags]\n\nCompares the RDS with Kubernetes and says what is out of line and what to do; read-only unless --cleanup --yes.\nExit status: 0 nothing needs action, 1 something does, 2 could not look.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return doctor.ExitCannotLook
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "rds-csi doctor takes no arguments, got %q\n", fs.Args())
		return doctor.ExitCannotLook
	}
	if err := o.validate(); err != nil {
		fmt.Fprintf(stderr, "rds-csi doctor: %v\n", err)
		return doctor.ExitCannotLook
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	defer klog.Flush()

	cfg := doctor.Config{DriverName: o.driverName, SnapshotNamePrefix: o.snapshotPrefix, VolumeNamePrefix: o.volumePrefix, MinAge: o.minAge}
	src, storage, closeSrc, err := doctorSources(&o)
	var report *doctor.Report
	if err != nil {
		report = &doctor.Report{Time: time.Now().UTC(), Driver: o.driverName, MinAge: o.minAge.String(), Findings: []doctor.Finding{}, Error: err.Error()}
	} else {
		defer closeSrc()
		report = doctor.Look(ctx, src, cfg)
		if report.Error == "" && o.cleanup {
			doctor.Cleanup(ctx, src, storage, cfg, report, o.yes, func(line string) { fmt.Fprintln(stderr, "cleanup:", line) })
		}
	}
	if o.output == "json" {
		err = report.WriteJSON(stdout)
	} else {
		err = report.WriteTable(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "rds-csi doctor: writing the report: %v\n", err)
		return doctor.ExitCannotLook
	}
	return report.ExitCode()
}

// doctorSources connects to the RDS (on demand, no background reconnects) and to the API server.
func doctorSources(o *doctorOptions) (doctor.Sources, *rds.Storage, func(), error) {
	signer, err := rds.LoadSigner(o.rdsKeyFile)
	if err != nil {
		return doctor.Sources{}, nil, nil, err
	}
	client, err := rds.NewClient(rds.Config{
		Address: o.rdsAddress, User: o.rdsUser, Signer: signer,
		KnownHostsFile: o.rdsKnownHosts, HostKey: o.hostKey, InsecureSkipHostKeyVerification: o.rdsInsecure,
		MaxSessions: o.rdsMaxSessions, CommandTimeout: o.rdsCommandTimeout,
	})
	if err != nil {
		return doctor.Sources{}, nil, nil, err
	}
	kcfg, err := doctorKubeConfig(o.kubeconfig)
	if err != nil {
		_ = client.Close()
		return doctor.Sources{}, nil, nil, err
	}
	kube, err := kubernetes.NewForConfig(kcfg)
	if err != nil {
		_ = client.Close()
		return doctor.Sources{}, nil, nil, err
	}
	dyn, err := dynamic.NewForConfig(kcfg)
	if err != nil {
		_ = client.Close()
		return doctor.Sources{}, nil, nil, err
	}
	st := rds.NewStorage(client)
	return doctor.Sources{RDS: st, Kube: kube, Dynamic: dyn}, st, func() { _ = client.Close() }, nil
}

// doctorKubeConfig is kubeConfig, falling back to $KUBECONFIG or ~/.kube/config outside a pod.
func doctorKubeConfig(path string) (*rest.Config, error) {
	cfg, err := kubeConfig(path)
	if err != nil || cfg != nil {
		return cfg, err
	}
	cfg, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(clientcmd.NewDefaultClientConfigLoadingRules(), nil).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("no Kubernetes config (give --kubeconfig, set $KUBECONFIG, or run in a pod): %w", err)
	}
	return cfg, nil
}
