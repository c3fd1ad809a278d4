package activities

import (
	"cmp"
	"context"
	"fmt"
	"strings"

	"go.temporal.io/sdk/temporal"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	catalogv1 "github.com/ferry-cdc/ferry/gen/ferry/catalog/v1"
	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/taskapi"
)

// Modify applies a new selection to a running task: it prechecks the
// source for it, resolves it, makes sure every added table can be
// snapshotted beside the stream, creates missing topics, and sets the
// publication's tables last, so that a refused modification changes
// nothing the stream sees.
func (a *Activities) Modify(ctx context.Context, in *taskv1.ModifyActivityInput) (*taskv1.ModifyActivityResult, error) {
	spec := in.GetSpec()
	if err := a.precheckSource(ctx, spec); err != nil {
		return nil, err
	}
	now, err := a.Catalog.ResolveTables(ctx, &catalogv1.ResolveTablesRequest{Source: spec.GetSource(), Objects: spec.GetObjects()})
	if err != nil {
		return nil, ClassifyRPC("resolving the new selection", err)
	}
	before := in.GetPreviousTables()
	if len(before) == 0 {
		prev, err := a.Catalog.ResolveTables(ctx, &catalogv1.ResolveTablesRequest{Source: spec.GetSource(), Objects: in.GetPreviousObjects()})
		if err != nil {
			return nil, ClassifyRPC("resolving the previous selection", err)
		}
		before = prev.GetTables()
	}
	res := diffTables(before, now)
	if spec.GetSyncTypes().GetFull() {
		if err := a.checkBackfillable(ctx, spec, res.GetAdded()); err != nil {
			return nil, err
		}
	}
	if _, err := a.Delivery.EnsureTopics(ctx, &deliveryv1.EnsureTopicsRequest{
		Kafka: spec.GetDestination(), Topics: TopicsFor(spec), VerifyOnly: !spec.GetSyncTypes().GetSchema(),
	}); err != nil {
		return nil, ClassifyRPC("creating topics for the new selection", err)
	}
	if _, err := a.Capture.EnsureReplication(ctx, &capturev1.EnsureReplicationRequest{
		Source: spec.GetSource(), PublicationName: in.GetPublicationName(), Tables: now.GetTables(), PublicationOnly: true,
		Schemas: selectedSchemas(spec.GetObjects()), AllTables: spec.GetObjects().GetWholeDatabase(),
		Filters: tableFilters(spec), Owner: in.GetReplicationOwner(),
	}); err != nil {
		return nil, ClassifyRPC(fmt.Sprintf("setting the tables of publication %s", in.GetPublicationName()), err)
	}
	estimates := estimatesByTable(now)
	for _, t := range res.GetAdded() {
		res.AddedEstimatedRows = append(res.AddedEstimatedRows, estimates[tableKey(t)])
	}
	return res, nil
}

// precheckSource runs the source's prechecks for the new selection: a table
// the role cannot read, or that cannot be published, is refused here rather
// than failing the stream later.
func (a *Activities) precheckSource(ctx context.Context, spec *taskv1.TaskSpec) error {
	pre, err := a.Catalog.Precheck(ctx, &catalogv1.PrecheckRequest{Source: spec.GetSource(), Objects: spec.GetObjects()})
	if err != nil {
		return ClassifyRPC("prechecking the new selection", err)
	}
	if failed := taskapi.FailedPrechecks(taskapi.AcknowledgeWarnings(pre.GetItems(), spec.GetAcknowledgedWarnings())); failed != "" {
		return temporal.NewNonRetryableApplicationError("the new selection fails the precheck: "+failed, taskapi.ErrConfig, nil)
	}
	return nil
}

// checkBackfillable refuses added tables without a primary key: their
// snapshot is read in key order between watermarks, and without a key a
// change during the snapshot cannot be matched to the row it replaces.
func (a *Activities) checkBackfillable(ctx context.Context, spec *taskv1.TaskSpec, added []*taskv1.TableRef) error {
	var keyless []string
	for _, t := range added {
		d, err := a.Catalog.DescribeTable(ctx, &catalogv1.DescribeTableRequest{Source: spec.GetSource(), Table: t})
		if err != nil {
			return ClassifyRPC(fmt.Sprintf("describing added table %s.%s", t.GetSchema(), t.GetTable()), err)
		}
		if len(d.GetPrimaryKey()) == 0 {
			keyless = append(keyless, t.GetSchema()+"."+t.GetTable())
		}
	}
	if len(keyless) > 0 {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf(
			"added tables without a primary key cannot be snapshotted while the task runs: %s; add a primary key, "+
				"or create a separate task for them", strings.Join(keyless, ", ")), taskapi.ErrConfig, nil)
	}
	return nil
}

// diffTables lists what the new selection adds and removes, keeping the
// new selection's order.
func diffTables(before []*taskv1.TableRef, now *catalogv1.ResolveTablesResponse) *taskv1.ModifyActivityResult {
	res := &taskv1.ModifyActivityResult{Tables: now.GetTables()}
	was := map[string]bool{}
	for _, t := range before {
		was[tableKey(t)] = true
	}
	is := map[string]bool{}
	for _, t := range now.GetTables() {
		is[tableKey(t)] = true
		if !was[tableKey(t)] {
			res.Added = append(res.Added, t)
		}
	}
	for _, t := range before {
		if !is[tableKey(t)] {
			res.Removed = append(res.Removed, t)
		}
	}
	return res
}

func tableKey(t *taskv1.TableRef) string { return t.GetSchema() + "\x00" + t.GetTable() }

// ApplyThrottle hands the spec's throttles to the running stream and
// snapshot of the task's slot. Only the capture instance serving them
// can, and a balanced client would reach any one: every instance is asked,
// and those without the slot's calls answer zero.
func (a *Activities) ApplyThrottle(ctx context.Context, in *taskv1.ApplyThrottleInput) (*capturev1.UpdateThrottleResponse, error) {
	adv := in.GetSpec().GetAdvanced()
	req := &capturev1.UpdateThrottleRequest{SlotName: in.GetSlotName(), Incremental: adv.GetIncrementalThrottle(), Full: adv.GetFullThrottle()}
	what := fmt.Sprintf("updating the throttle of slot %s", in.GetSlotName())
	clients := []capturev1.CaptureServiceClient{a.Capture}
	if a.CaptureInstances != nil {
		var err error
		if clients, err = a.CaptureInstances(ctx); err != nil {
			return nil, ClassifyRPC(what, status.Error(codes.Unavailable, err.Error()))
		}
	}
	var total uint32
	var firstErr error
	for _, c := range clients {
		res, err := c.UpdateThrottle(ctx, req)
		if err != nil {
			// An instance that is down holds no stream; one that holds it
			// answers, and that is what counts.
			firstErr = cmp.Or(firstErr, err)
			continue
		}
		total += res.GetStreamsUpdated()
	}
	if total == 0 && firstErr != nil {
		return nil, ClassifyRPC(what, firstErr)
	}
	return &capturev1.UpdateThrottleResponse{StreamsUpdated: total}, nil
}
