package driver

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/srvlab/rds-csi/pkg/routeros"
)

// toStatus keeps the meaning of a backend error (docs/design.md, principle 3). gRPC status errors pass
// through as they are; an outage never becomes NotFound.
func toStatus(err error, what string) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return status.Errorf(codes.DeadlineExceeded, "%s: %v", what, err)
	case errors.Is(err, context.Canceled):
		return status.Errorf(codes.Canceled, "%s: %v", what, err)
	}
	return status.Errorf(codeOf(routeros.KindOf(err)), "%s: %v", what, err)
}

func codeOf(k routeros.Kind) codes.Code {
	switch k {
	case routeros.KindNotFound:
		return codes.NotFound
	case routeros.KindAlreadyExists:
		return codes.AlreadyExists
	case routeros.KindOutOfSpace:
		return codes.ResourceExhausted
	case routeros.KindInvalidArgument:
		return codes.InvalidArgument
	case routeros.KindUnavailable:
		return codes.Unavailable
	case routeros.KindDeadlineExceeded:
		return codes.DeadlineExceeded
	case routeros.KindBusy:
		return codes.Aborted
	default:
		return codes.Internal
	}
}
