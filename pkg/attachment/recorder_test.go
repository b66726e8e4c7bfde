package attachment

import (
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/record"
)

// RecordedEvent is one event kept by a MemoryRecorder.
type RecordedEvent struct {
	Object  *corev1.ObjectReference
	Type    string
	Reason  string
	Message string
}

// MemoryRecorder is a record.EventRecorder that keeps events in memory, so that tests can check what was posted.
type MemoryRecorder struct {
	mu     sync.Mutex
	events []RecordedEvent
}

var _ record.EventRecorder = (*MemoryRecorder)(nil)

// Event implements record.EventRecorder.
func (r *MemoryRecorder) Event(obj runtime.Object, eventType, reason, message string) {
	ref, _ := obj.(*corev1.ObjectReference)
	r.mu.Lock()
	r.events = append(r.events, RecordedEvent{Object: ref, Type: eventType, Reason: reason, Message: message})
	r.mu.Unlock()
}

// Eventf implements record.EventRecorder.
func (r *MemoryRecorder) Eventf(obj runtime.Object, eventType, reason, format string, args ...any) {
	r.Event(obj, eventType, reason, fmt.Sprintf(format, args...))
}

// AnnotatedEventf implements record.EventRecorder.
func (r *MemoryRecorder) AnnotatedEventf(obj runtime.Object, _ map[string]string, eventType, reason, format string, args ...any) {
	r.Eventf(obj, eventType, reason, format, args...)
}

// Events returns a copy of the events so far.
func (r *MemoryRecorder) Events() []RecordedEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]RecordedEvent(nil), r.events...)
}

// Reasons returns the reasons of the events so far, in order.
func (r *MemoryRecorder) Reasons() []string {
	var out []string
	for _, e := range r.Events() {
		out = append(out, e.Reason)
	}
	return out
}
