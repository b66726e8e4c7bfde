package volid

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestValidators(t *testing.T) {
	long := strings.Repeat("a", 300)
	for _, tc := range []struct {
		name string
		err  error
		ok   bool
	}{
		{"slot good", ValidateSlot("pvc-1"), true},
		{"slot longest", ValidateSlot(strings.Repeat("a", MaxSlotLen)), true},
		{"slot too long", ValidateSlot(strings.Repeat("a", MaxSlotLen+1)), false},
		{"slot upper", ValidateSlot("PVC"), false},
		{"slot empty", ValidateSlot(""), false},
		{"volume good", ValidateVolumeID("pvc-1"), true},
		{"volume is a snapshot", ValidateVolumeID("snap-1"), false},
		{"volume empty", ValidateVolumeID(""), false},
		{"path good", ValidatePath("/storage-pool/v/pvc-1.img"), true},
		{"path 300", ValidatePath("/" + long), false},
		{"path dotdot", ValidatePath("/a/../b"), false},
		{"path relative", ValidatePath("a/b"), false},
		{"nqn good", ValidateNQN(NQN("pvc-1")), true},
		{"nqn 300", ValidateNQN(NQNPrefix + long), false},
		{"port good", ValidatePort(DefaultPort), true},
		{"port 0", ValidatePort(0), false},
		{"port 70000", ValidatePort(70000), false},
	} {
		if (tc.err == nil) != tc.ok {
			t.Errorf("%s: err = %v, want ok=%v", tc.name, tc.err, tc.ok)
		}
		if tc.err != nil && !errors.Is(tc.err, ErrInvalid) {
			t.Errorf("%s: %v does not wrap ErrInvalid", tc.name, tc.err)
		}
	}
	if err := ValidateSlot(strings.Repeat("\xff", 500)); len(err.Error()) > 400 || strings.ContainsRune(err.Error(), '\uFFFD') {
		t.Errorf("message not bounded or not valid UTF-8: %q", err)
	}
}

func TestNQNRoundTrip(t *testing.T) {
	slot := strings.Repeat("a", MaxSlotLen)
	if err := ValidateNQN(NQN(slot)); err != nil {
		t.Fatalf("the NQN of the longest slot is invalid: %v", err)
	}
	if got, err := SlotOfNQN(NQN("pvc-1")); err != nil || got != "pvc-1" {
		t.Errorf("SlotOfNQN = %q, %v", got, err)
	}
	for _, nqn := range []string{"nqn.2014-08.org.nvmexpress:other", NQNPrefix, NQNPrefix + "UPPER"} {
		if _, err := SlotOfNQN(nqn); !errors.Is(err, ErrInvalid) {
			t.Errorf("SlotOfNQN(%q) err = %v", nqn, err)
		}
	}
	if Owned("nqn.2014-08.org.nvmexpress:other") || Owned(NQNPrefix) || !Owned(NQN("x")) {
		t.Error("Owned is wrong")
	}
	if got := FilePath("/storage-pool/v", "pvc-1"); got != "/storage-pool/v/pvc-1.img" {
		t.Errorf("FilePath = %q", got)
	}
}

// IDs derived from names must never change: a retried CreateVolume finds its volume by them, and
// volumes made by earlier releases must still be found.
func TestIDsFromNamesAreStable(t *testing.T) {
	const pvc = "pvc-0b8b4a7e-1f53-4b8e-9b1c-2f3a4b5c6d7e"
	if id, err := VolumeIDForName(pvc); err != nil || id != pvc {
		t.Errorf("a Kubernetes PVC name is its own ID: %q, %v", id, err)
	}
	if id, err := VolumeIDForName("my-volume"); err != nil || id != "pvc-177ca43d-89ed-5184-8321-d4732a4f9627" || ValidateVolumeID(id) != nil {
		t.Errorf("VolumeIDForName = %q, %v", id, err)
	}
	if p, err := SnapshotIDPrefix("daily"); err != nil || p != "snap-7a0722e4-4531-53af-8a73-74b16f03aeb8-t" {
		t.Errorf("SnapshotIDPrefix = %q, %v", p, err)
	}
	for _, bad := range []string{"", strings.Repeat("a", MaxNameLength+1), "a b", "-a"} {
		if _, err := VolumeIDForName(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("VolumeIDForName(%q) err = %v", bad, err)
		}
	}
}

func TestSnapshotIDRoundTrip(t *testing.T) {
	prefix, err := SnapshotIDPrefix("daily")
	if err != nil || !strings.HasPrefix(prefix, SnapshotPrefix) {
		t.Fatalf("SnapshotIDPrefix = %q, %v", prefix, err)
	}
	created := time.Unix(1700000000, 0)
	id, err := SnapshotID(prefix, created, "pvc-1")
	if err != nil || !strings.HasPrefix(id, prefix) || ValidateSlot(id) != nil {
		t.Fatalf("SnapshotID = %q, %v", id, err)
	}
	s, ok := ParseSnapshotID(id)
	if !ok || s.Source != "pvc-1" || !s.Created.Equal(created) {
		t.Errorf("ParseSnapshotID(%q) = %+v, %v", id, s, ok)
	}
	if _, ok := ParseSnapshotID("pvc-1"); ok {
		t.Error("a volume ID parsed as a snapshot ID")
	}
	if _, err := SnapshotID(prefix, created, strings.Repeat("a", MaxSlotLen)); !errors.Is(err, ErrInvalid) {
		t.Errorf("an over-long snapshot ID was accepted: %v", err)
	}
}

// The earlier driver's snapshot IDs, in each form it wrote, are recognised and are valid slots;
// this driver's own IDs, volume IDs and near misses are not taken for them.
func TestEarlierSnapshotIDs(t *testing.T) {
	const u = "a1b2c3d4-e5f6-7890-abcd-ef1234567890"
	for _, id := range []string{
		"snap-" + u + "-at-1739800000", // Unix time
		"snap-" + u + "-at-3a9f8c02d1", // 10 hex digits of a name hash
		"snap-" + u,                    // the oldest form
	} {
		if !IsEarlierSnapshotID(id) {
			t.Errorf("%s not recognised", id)
		}
		if err := ValidateSlot(id); err != nil {
			t.Errorf("%s: %v", id, err)
		}
		if _, ok := ParseSnapshotID(id); ok {
			t.Errorf("%s parses as one of this driver's snapshot IDs", id)
		}
	}
	prefix, err := SnapshotIDPrefix("snapshot-1")
	if err != nil {
		t.Fatal(err)
	}
	own, err := SnapshotID(prefix, time.Unix(1739800000, 0), "pvc-"+u)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{
		own, "pvc-" + u, "snap-" + u + "-at-", "snap-" + u + "-at-XYZ", "snap-" + u + "-at-123456789012345678901",
		"snap-" + strings.ToUpper(u), "snap-" + u + "-at-1-x", "snap-" + u[:35], "xsnap-" + u, "snap-" + u + "/../x",
	} {
		if IsEarlierSnapshotID(id) {
			t.Errorf("%q taken for an earlier driver's snapshot ID", id)
		}
	}
}
