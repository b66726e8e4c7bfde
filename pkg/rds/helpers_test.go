package rds

import (
	"os"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/srvlab/rds-csi/pkg/volid"
)

func spec(slot string, size int64) DiskSpec {
	return DiskSpec{
		Slot: slot, FilePath: volid.FilePath("/storage-pool/kubernetes-volumes", slot), Size: size,
		Export: true, Port: volid.DefaultPort, NQN: volid.NQN(slot),
	}
}

func knownHostsLine(addr string, key ssh.PublicKey) string {
	return knownhosts.Line([]string{knownhosts.Normalize(addr)}, key) + "\n"
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }
