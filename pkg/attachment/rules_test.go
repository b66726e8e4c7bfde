package attachment

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

func TestDecide(t *testing.T) {
	now := t0
	at := func(node string, ago time.Duration) Attachment { return Attachment{NodeID: node, Since: now.Add(-ago)} }
	cases := []struct {
		name    string
		holders []Attachment
		req     Request
		already bool
		code    codes.Code
		mention string
	}{
		{"free", nil, rwo("a"), false, codes.OK, ""},
		{"same node", []Attachment{at("a", 0)}, rwo("a"), true, codes.OK, ""},
		{"same node, other readonly", []Attachment{{NodeID: "a", ReadOnly: true}}, rwo("a"), false, codes.AlreadyExists, "readonly=true"},
		{"single-node held elsewhere", []Attachment{at("a", 0)}, rwo("b"), false, codes.FailedPrecondition, "attached to node a"},
		{"multi-node second", []Attachment{at("a", 0)}, rwx("b", time.Minute), false, codes.OK, ""},
		{"multi-node third", []Attachment{at("a", 0), at("b", 0)}, rwx("c", time.Minute), false, codes.FailedPrecondition, "the most a live migration allows"},
		{"multi-node third, overdue", []Attachment{at("a", time.Hour), at("b", 2*time.Minute)}, rwx("c", time.Minute), false, codes.FailedPrecondition, "longer than the migration timeout 1m0s"},
		{"multi-node third, default timeout", []Attachment{at("a", time.Hour), at("b", 4*time.Minute)}, rwx("c", 0), false, codes.FailedPrecondition, "the most"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			already, err := decide(tc.holders, tc.req, now)
			if already != tc.already {
				t.Fatalf("already = %t, want %t", already, tc.already)
			}
			var mention []string
			if tc.mention != "" {
				mention = append(mention, tc.mention)
			}
			wantCode(t, err, tc.code, mention...)
		})
	}
}

func TestOverdue(t *testing.T) {
	a := Attachment{NodeID: "a", Since: t0}
	cases := []struct {
		name    string
		holders []Attachment
		timeout time.Duration
		now     time.Time
		want    bool
	}{
		{"one holder", []Attachment{a}, time.Second, t0.Add(time.Hour), false},
		{"dual within", []Attachment{a, {NodeID: "b", Since: t0.Add(time.Minute)}}, 2 * time.Minute, t0.Add(2 * time.Minute), false},
		{"dual past, from the later holder", []Attachment{a, {NodeID: "b", Since: t0.Add(time.Minute)}}, 2 * time.Minute, t0.Add(3*time.Minute + 1), true},
		{"default timeout", []Attachment{a, {NodeID: "b", Since: t0}}, 0, t0.Add(DefaultMigrationTimeout + 1), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Overdue(tc.holders, tc.timeout, tc.now); got != tc.want {
				t.Fatalf("Overdue = %t, want %t", got, tc.want)
			}
		})
	}
}

func TestParseMigrationTimeout(t *testing.T) {
	for in, want := range map[string]time.Duration{"": DefaultMigrationTimeout, "90s": 90 * time.Second, "junk": DefaultMigrationTimeout, "-1m": DefaultMigrationTimeout} {
		if got := ParseMigrationTimeout(in); got != want {
			t.Errorf("ParseMigrationTimeout(%q) = %v, want %v", in, got, want)
		}
	}
}

// The earlier driver's migrationTimeoutSeconds is read as it read it (clamped to 30 s-1 h, the
// default for anything not a positive integer) when migrationTimeout is absent.
func TestMigrationTimeoutOf(t *testing.T) {
	const k, old = VolumeContextMigrationTimeout, VolumeContextMigrationTimeoutSeconds
	for _, tc := range []struct {
		vc   map[string]string
		want time.Duration
	}{
		{nil, DefaultMigrationTimeout},
		{map[string]string{k: "90s"}, 90 * time.Second},
		{map[string]string{k: "90s", old: "600"}, 90 * time.Second},
		{map[string]string{k: "junk", old: "600"}, DefaultMigrationTimeout},
		{map[string]string{old: "600"}, 10 * time.Minute},
		{map[string]string{old: "300"}, 5 * time.Minute},
		{map[string]string{old: "10"}, 30 * time.Second},
		{map[string]string{old: "7200"}, time.Hour},
		{map[string]string{old: "30"}, 30 * time.Second},
		{map[string]string{old: "3600"}, time.Hour},
		{map[string]string{old: "0"}, DefaultMigrationTimeout},
		{map[string]string{old: "-300"}, DefaultMigrationTimeout},
		{map[string]string{old: "abc"}, DefaultMigrationTimeout},
		{map[string]string{old: ""}, DefaultMigrationTimeout},
	} {
		if got := MigrationTimeoutOf(tc.vc); got != tc.want {
			t.Errorf("MigrationTimeoutOf(%v) = %v, want %v", tc.vc, got, tc.want)
		}
	}
}

func TestMemoryAttacher(t *testing.T) {
	ctx := context.Background()
	m := NewMemory("a", "b", "c")
	now := t0
	m.now = func() time.Time { return now }
	steps := []struct {
		name    string
		do      func() error
		code    codes.Code
		mention []string
	}{
		{"unknown node", func() error { return m.Attach(ctx, rwo("zz")) }, codes.NotFound, nil},
		{"first", func() error { return m.Attach(ctx, rwx("a", time.Minute)) }, codes.OK, nil},
		{"second for migration", func() error { return m.Attach(ctx, rwx("b", time.Minute)) }, codes.OK, nil},
		{"third", func() error { return m.Attach(ctx, rwx("c", time.Minute)) }, codes.FailedPrecondition, []string{"the most"}},
		{"third after the timeout", func() error { now = now.Add(2 * time.Minute); return m.Attach(ctx, rwx("c", time.Minute)) }, codes.FailedPrecondition, []string{"migration timeout"}},
		{"one side detaches", func() error { return m.Detach(ctx, vol1, "b") }, codes.OK, nil},
		{"new dual attach", func() error { return m.Attach(ctx, rwx("c", time.Minute)) }, codes.OK, nil},
		{"detach from every node", func() error { return m.Detach(ctx, vol1, "") }, codes.OK, nil},
		{"single-node after release", func() error { return m.Attach(ctx, rwo("b")) }, codes.OK, nil},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) { wantCode(t, s.do(), s.code, s.mention...) })
	}
	if got := m.PublishedNodes(vol1); len(got) != 1 || got[0] != "b" {
		t.Fatalf("PublishedNodes = %v, want [b]", got)
	}
}
