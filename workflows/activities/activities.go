// Package activities holds the task workflow's activities: all the I/O a
// task does, through Ferry's services, Temporal's heartbeats and alert
// webhooks. The workflow (workflows/task) schedules them by their
// registered names, taskapi.Activity*, which are the method names of
// Activities; it does not import this package.
package activities

import (
	"context"
	"errors"
	"fmt"
	"net/http"
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

// Activities call Ferry's gRPC services; they hold no state of their own.
type Activities struct {
	Catalog  catalogv1.CatalogServiceClient
	Capture  capturev1.CaptureServiceClient
	Delivery deliveryv1.DeliveryServiceClient
	// CaptureInstances lists a client for every capture instance, for the
	// calls only the instance holding a stream can serve (throttle
	// updates); nil: Capture alone, one instance.
	CaptureInstances func(context.Context) ([]capturev1.CaptureServiceClient, error)
	// HTTP posts alert webhooks (alert.go); nil uses a client with
	// WebhookTimeout.
	HTTP *http.Client
	// Metrics counts alerts; nil counts nothing.
	Metrics *Metrics
}

// Precheck asks the catalog service to check the source (and the schema
// registry, when one is configured).
func (a *Activities) Precheck(ctx context.Context, in *taskv1.PrecheckActivityInput) (*taskv1.PrecheckActivityResult, error) {
	res, err := a.Catalog.Precheck(ctx, &catalogv1.PrecheckRequest{
		Source: in.GetSpec().GetSource(), Objects: in.GetSpec().GetObjects(), Destination: in.GetSpec().GetDestination(),
	})
	if err != nil {
		return nil, ClassifyRPC("running the precheck", err)
	}
	spec := in.GetSpec()
	topics, err := a.Delivery.CheckTopics(ctx, &deliveryv1.CheckTopicsRequest{
		Kafka: spec.GetDestination(), Topics: TopicsFor(spec),
		CreateMissing: spec.GetSyncTypes().GetSchema(), ConflictMode: spec.GetKafka().GetConflictMode(),
	})
	if err != nil {
		return nil, ClassifyRPC("checking the Kafka topics", err)
	}
	items := append(res.GetItems(), topics.GetItems()...)
	return &taskv1.PrecheckActivityResult{Items: append(items, taskapi.AcksItem(spec))}, nil
}

// Setup is schema sync as far as it goes today: resolve the selected tables,
// create the topics, then the publication and the slot. The slot comes last so
// that it never starts retaining WAL for a task whose topics cannot exist.
// With publication_only, full sync creates the slot later, with its snapshot.
func (a *Activities) Setup(ctx context.Context, in *taskv1.SetupActivityInput) (*taskv1.SetupActivityResult, error) {
	spec := in.GetSpec()
	resolved, err := a.Catalog.ResolveTables(ctx, &catalogv1.ResolveTablesRequest{
		Source: spec.GetSource(), Objects: spec.GetObjects(),
	})
	if err != nil {
		return nil, ClassifyRPC("resolving the selected tables", err)
	}
	keyed := allKeyed(resolved)
	if err := checkExactlyOnceFullSync(in, resolved, keyed); err != nil {
		return nil, err
	}
	if _, err := a.Delivery.EnsureTopics(ctx, &deliveryv1.EnsureTopicsRequest{
		Kafka: spec.GetDestination(), Topics: TopicsFor(spec), VerifyOnly: !spec.GetSyncTypes().GetSchema(),
	}); err != nil {
		return nil, ClassifyRPC("creating topics", err)
	}
	rep, err := a.Capture.EnsureReplication(ctx, &capturev1.EnsureReplicationRequest{
		Source: spec.GetSource(), SlotName: in.GetSlotName(), PublicationName: in.GetPublicationName(),
		Tables: resolved.GetTables(), PublicationOnly: in.GetPublicationOnly() && (!in.GetChunkIfKeyed() || !keyed),
		Schemas: selectedSchemas(spec.GetObjects()), AllTables: spec.GetObjects().GetWholeDatabase(),
		Filters: tableFilters(spec), Owner: in.GetReplicationOwner(),
	})
	if err != nil {
		return nil, ClassifyRPC(fmt.Sprintf("creating slot and publication %s", in.GetSlotName()), err)
	}
	return &taskv1.SetupActivityResult{
		Tables: resolved.GetTables(), StartLsn: rep.GetConfirmedLsn(), EstimatedRows: resolved.GetEstimatedRows(), AllKeyed: keyed,
	}, nil
}

// checkExactlyOnceFullSync refuses, before anything is created, an
// exactly-once task whose full sync would take the exported snapshot:
// that snapshot is read in one go, cannot resume part-way, and a retried
// one writes every row again. Only chunked full sync, which needs a primary
// key on every table, keeps its progress in Kafka's transactions.
func checkExactlyOnceFullSync(in *taskv1.SetupActivityInput, resolved *catalogv1.ResolveTablesResponse, keyed bool) error {
	if !in.GetSpec().GetKafka().GetExactlyOnce() || !in.GetPublicationOnly() || in.GetChunkIfKeyed() && keyed {
		return nil
	}
	var keyless []string
	for i, t := range resolved.GetTables() {
		if i >= len(resolved.GetHasPrimaryKey()) || !resolved.GetHasPrimaryKey()[i] {
			keyless = append(keyless, t.GetSchema()+"."+t.GetTable())
		}
	}
	if len(keyless) == 0 { // a workflow started before chunked full sync
		return temporal.NewNonRetryableApplicationError("kafka.exactly_once with sync_types.full needs chunked full sync, "+
			"which this task predates; recreate the task", taskapi.ErrConfig, nil)
	}
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf("exactly_once with full sync needs a primary key on every table: %s; "+
		"add primary keys, or turn off kafka.exactly_once or sync_types.full", strings.Join(keyless, ", ")), taskapi.ErrConfig, nil)
}

// allKeyed tells whether every resolved table has a primary key, which
// chunked full sync needs.
func allKeyed(res *catalogv1.ResolveTablesResponse) bool {
	keys := res.GetHasPrimaryKey()
	if len(keys) != len(res.GetTables()) {
		return false
	}
	for _, k := range keys {
		if !k {
			return false
		}
	}
	return true
}

// selectedSchemas names the schemas the selection takes whole, which the
// publication then covers FOR TABLES IN SCHEMA, tables created later
// included.
func selectedSchemas(sel *taskv1.ObjectSelection) []string {
	var out []string
	for _, s := range sel.GetSchemas() {
		out = append(out, s.GetSchema())
	}
	return out
}

// TopicsFor lists the task's topics with the partition counts to create them
// with.
func TopicsFor(spec *taskv1.TaskSpec) []*deliveryv1.TopicSpec {
	partitions := map[string]uint32{spec.GetDestination().GetTopic(): 1}
	order := []string{spec.GetDestination().GetTopic()}
	for _, t := range spec.GetObjects().GetTables() {
		name := t.GetTopic()
		if name == "" {
			name = spec.GetDestination().GetTopic()
		}
		if _, seen := partitions[name]; !seen {
			order = append(order, name)
		}
		partitions[name] = max(partitions[name], t.GetPartitions(), 1)
	}
	// The DDL and dead-letter topics get one partition unless they are also
	// data topics: their records are read in order, not in parallel.
	for _, extra := range []string{spec.GetKafka().GetDdlTopic(), spec.GetKafka().GetDeadLetterTopic()} {
		if _, seen := partitions[extra]; extra != "" && !seen {
			order = append(order, extra)
			partitions[extra] = 1
		}
	}
	out := make([]*deliveryv1.TopicSpec, 0, len(order))
	for _, name := range order {
		out = append(out, &deliveryv1.TopicSpec{Name: name, Partitions: partitions[name]})
	}
	return out
}

// Release drops the slot and publication Ferry created for the task.
func (a *Activities) Release(ctx context.Context, in *taskv1.ReleaseActivityInput) error {
	res, err := a.Capture.ReleaseReplication(ctx, &capturev1.ReleaseReplicationRequest{
		Source: in.GetSpec().GetSource(), SlotName: in.GetSlotName(), PublicationName: in.GetPublicationName(),
		Owner: in.GetReplicationOwner(),
	})
	if err != nil {
		return ClassifyRPC(fmt.Sprintf("releasing slot and publication %s", in.GetSlotName()), err)
	}
	if why := res.GetLeftBecause(); why != "" {
		// Dropping what another task or a person made could stop their
		// replication; the task says so and stays unreleased.
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("releasing slot and publication %s: left in place: %s", in.GetSlotName(), why), taskapi.ErrConfig, nil)
	}
	return nil
}

// ClassifyRPC turns a Ferry service's gRPC error into a typed application
// error, which decides the retry window the workflow applies. Details ride
// along so the workflow learns the checkpoint even from a failed attempt.
func ClassifyRPC(what string, err error, details ...any) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) {
		return temporal.NewCanceledError(details...)
	}
	st, _ := status.FromError(err)
	// A status wrapped on its way up (say "capture stream: ...") comes back
	// with the whole text as its message, gRPC's own prefix included; users
	// read the message, not the envelope.
	msg := fmt.Sprintf("%s: %s", what, strings.Replace(st.Message(), fmt.Sprintf("rpc error: code = %s desc = ", st.Code()), "", 1))
	// The message already carries the status text, so the cause is left
	// out rather than repeated in every error the workflow prints.
	opts := temporal.ApplicationErrorOptions{Details: details}
	switch st.Code() {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted:
		return temporal.NewApplicationErrorWithOptions(msg, taskapi.ErrConnection, opts)
	case codes.InvalidArgument, codes.DataLoss:
		// DataLoss: the source lost what the task needs to resume (its
		// slot, or a publication the slot still needs). No retry brings
		// it back; only a new full sync does, so the task fails at once.
		opts.NonRetryable = true
		return temporal.NewApplicationErrorWithOptions(msg, taskapi.ErrConfig, opts)
	case codes.Canceled:
		return temporal.NewCanceledError(details...)
	default:
		return temporal.NewApplicationErrorWithOptions(msg, taskapi.ErrOther, opts)
	}
}
