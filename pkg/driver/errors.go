package driver

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/srvlab/rds-csi/pkg/nvme"
	"github.com/srvlab/rds-csi/pkg/rds"
)

// invalid is the answer to a request that no retry can make right.
func invalid(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}

// toStatus turns a backend, initiator or host error into a gRPC status that keeps its meaning
// (docs/design.md, principle 3), prefixed with what was being done. gRPC status errors pass through as
// they are; an outage never becomes NotFound.
func toStatus(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Errorf(codeOf(err), "%s: %v", fmt.Sprintf(format, args...), err)
}

// errorCodes are checked in order, before the backend's error kinds: a deadline or a cancel
// wrapped in a backend error is still a deadline or a cancel.
var errorCodes = []struct {
	err  error
	code codes.Code
}{
	{context.DeadlineExceeded, codes.DeadlineExceeded},
	{context.Canceled, codes.Canceled},
	{nvme.ErrInvalid, codes.InvalidArgument},
	{nvme.ErrNotFound, codes.NotFound},
	{nvme.ErrUnavailable, codes.Unavailable},
	{nvme.ErrNotConnected, codes.FailedPrecondition},
	{nvme.ErrNotOwned, codes.FailedPrecondition},
	{errMountInUse, codes.FailedPrecondition},
}

// kindCodes maps the backend's error kinds; an unknown kind is Internal.
var kindCodes = map[rds.Kind]codes.Code{
	rds.KindNotFound:         codes.NotFound,
	rds.KindAlreadyExists:    codes.AlreadyExists,
	rds.KindOutOfSpace:       codes.ResourceExhausted,
	rds.KindInvalidArgument:  codes.InvalidArgument,
	rds.KindUnavailable:      codes.Unavailable,
	rds.KindDeadlineExceeded: codes.DeadlineExceeded,
	rds.KindBusy:             codes.Aborted,
}

func codeOf(err error) codes.Code {
	for _, e := range errorCodes {
		if errors.Is(err, e.err) {
			return e.code
		}
	}
	if c, ok := kindCodes[rds.KindOf(err)]; ok {
		return c
	}
	return codes.Internal
}
