package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"go.temporal.io/sdk/testsuite"
	"google.golang.org/grpc"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/capture"
	"github.com/ferry-cdc/ferry/services/delivery"
	"github.com/ferry-cdc/ferry/services/testenv"
	"github.com/ferry-cdc/ferry/workflows/activities"
)

// This test lived in services/delivery; it runs the worker's activity, and
// the services module does not depend on the workflows module, so it lives
// here with the other tests that join the two, and reads delivery's
// checkpoint topic through its documented record format.

// TestExactlyOnceChunkedBackfillSurvivesDeliveryKill runs the worker's
// incremental activity over real capture and delivery services, a private
// PostgreSQL and a private broker, as chunked full sync does: one keyed
// table of 12000 rows read in primary-key chunks (two, of full sync's
// 10,000 rows). Delivery is killed once Kafka holds part of the backfill,
// and the activity runs again from the checkpoint it started with, as
// after a worker that died before any heartbeat reached Temporal. It must
// resume where Kafka is, and a read_committed consumer must see every row
// exactly once.
func TestExactlyOnceChunkedBackfillSurvivesDeliveryKill(t *testing.T) {
	const rows = 12000
	pg := testenv.StartPostgres(t)
	bootstrap := testenv.StartKafka(t).Bootstrap()
	tbl, topic := testenv.UniqueName("eos_bf"), testenv.UniqueName("ferry_eos_bf_task")
	testenv.Exec(t, pg.Conn(t), fmt.Sprintf("CREATE TABLE public.%s (id int8 PRIMARY KEY, note text)", tbl),
		fmt.Sprintf("INSERT INTO public.%s SELECT g, 'row ' || g FROM generate_series(1, %d) g", tbl, rows))
	capture := startBackfillCapture(t)
	ref := &taskv1.TableRef{Schema: "public", Table: tbl}
	rep, err := capture.EnsureReplication(context.Background(), &capturev1.EnsureReplicationRequest{
		Source: pg.Source(), SlotName: tbl, PublicationName: tbl, Tables: []*taskv1.TableRef{ref},
	})
	if err != nil {
		t.Fatalf("EnsureReplication: %v", err)
	}
	in := &taskv1.IncrementalActivityInput{
		TaskId: topic, SlotName: tbl, PublicationName: tbl, UntilBackfilled: true,
		Checkpoint: &cdcv1.Checkpoint{ConfirmedLsn: rep.GetConfirmedLsn(), Backfills: []*cdcv1.BackfillProgress{{Schema: "public", Table: tbl}}},
		Spec: &taskv1.TaskSpec{
			Source:      pg.Source(),
			Destination: &taskv1.KafkaEndpoint{BootstrapServers: bootstrap, Topic: topic},
			Objects:     &taskv1.ObjectSelection{Tables: []*taskv1.TableSelection{{Schema: "public", Table: tbl}}},
			SyncTypes:   &taskv1.SyncTypes{Full: true},
			Kafka: &taskv1.KafkaOptions{ExactlyOnce: true, Acks: taskv1.Acks_ACKS_ALL,
				PartitionPolicy: taskv1.PartitionPolicy_PARTITION_POLICY_HASH_PRIMARY_KEY},
			// Slow enough that the kill lands mid-backfill: 24 s for the
			// table. At 1,500 rows/s (8 s) a loaded 2-core machine read
			// the checkpoint topic only once the backfill was done.
			Advanced: &taskv1.AdvancedOptions{IncrementalThrottle: &taskv1.IncrementalThrottle{RowsPerSecond: 500}},
		},
	}

	first := startKillableDelivery(t, capture)
	ensureTopics(t, first.client, bootstrap, &deliveryv1.TopicSpec{Name: topic, Partitions: 3})
	env := (&testsuite.WorkflowTestSuite{}).NewTestActivityEnvironment()
	env.RegisterActivity(&activities.Activities{Capture: capture, Delivery: first.client})
	killed := make(chan *cdcv1.BackfillProgress, 1)
	go func() { killed <- killMidBackfill(t, bootstrap, topic, first) }()
	if _, err := env.ExecuteActivity("Incremental", in); err == nil {
		t.Fatal("the incremental activity ended cleanly though its delivery was killed")
	}
	atKill := <-killed
	if atKill == nil {
		t.Fatal("Kafka held no partial backfill before the activity ended")
	}
	t.Logf("delivery killed with %d rows of the backfill committed", atKill.GetRows())

	second := startKillableDelivery(t, capture)
	env = (&testsuite.WorkflowTestSuite{}).NewTestActivityEnvironment()
	env.RegisterActivity(&activities.Activities{Capture: capture, Delivery: second.client})
	val, err := env.ExecuteActivity("Incremental", in) // the stale checkpoint again
	if err != nil {
		t.Fatalf("the resumed activity: %v", err)
	}
	var done cdcv1.Checkpoint
	if err := val.Get(&done); err != nil {
		t.Fatal(err)
	}
	if b := done.GetBackfills(); len(b) != 1 || !b[0].GetDone() || b[0].GetRows() != rows {
		t.Fatalf("final checkpoint %v, want the backfill done with %d rows", &done, rows)
	}
	counts := testenv.ReadCommittedKeys(t, bootstrap, topic, rows, 90*time.Second)
	for id := 1; id <= rows; id++ {
		if n := counts[strconv.Itoa(id)]; n != 1 {
			t.Errorf("row %d read %d times, want once", id, n)
		}
	}
}

// killMidBackfill kills d once the task's checkpoint in Kafka holds part of
// the backfill, and returns that progress; nil if the backfill finished or
// a minute passed first.
func killMidBackfill(t *testing.T, bootstrap, taskID string, d *killableDelivery) *cdcv1.BackfillProgress {
	defer d.kill()
	deadline := time.Now().Add(time.Minute)
	tick := time.NewTicker(100 * time.Millisecond) // between polls of the checkpoint topic
	defer tick.Stop()
	for ; time.Now().Before(deadline); <-tick.C {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, bfs, err := delivery.StoredCheckpoint(ctx, kafka.ConfigMap{"bootstrap.servers": bootstrap}, taskID)
		cancel()
		if err != nil {
			t.Logf("reading the checkpoint: %v", err)
			continue
		}
		for _, b := range bfs {
			if b.GetDone() {
				return nil
			}
			if b.GetRows() > 0 {
				return b
			}
		}
	}
	return nil
}

// killableDelivery is a delivery service whose server can be stopped
// mid-stream, as a crash would.
type killableDelivery struct {
	client deliveryv1.DeliveryServiceClient
	kill   func()
}

// startKillableDelivery serves delivery with capture as the service its
// Replicate reads changes from, as -capture gives it in production.
func startKillableDelivery(t *testing.T, capture capturev1.CaptureServiceClient) *killableDelivery {
	t.Helper()
	impl := delivery.NewServer(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	impl.Capture = capture
	cc, stop := testenv.ServeGRPC(t, func(gs *grpc.Server) { deliveryv1.RegisterDeliveryServiceServer(gs, impl) })
	var once sync.Once
	kill := func() { once.Do(func() { stop(); impl.Wait() }) }
	t.Cleanup(kill)
	return &killableDelivery{client: deliveryv1.NewDeliveryServiceClient(cc), kill: kill}
}

// startBackfillCapture serves the real capture service on a loopback port.
func startBackfillCapture(t *testing.T) capturev1.CaptureServiceClient {
	t.Helper()
	cc, _ := testenv.ServeGRPC(t, func(gs *grpc.Server) {
		capturev1.RegisterCaptureServiceServer(gs, capture.NewServer(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	})
	return capturev1.NewCaptureServiceClient(cc)
}

func ensureTopics(t *testing.T, c deliveryv1.DeliveryServiceClient, bootstrap string, topics ...*deliveryv1.TopicSpec) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.EnsureTopics(ctx, &deliveryv1.EnsureTopicsRequest{Kafka: &taskv1.KafkaEndpoint{BootstrapServers: bootstrap}, Topics: topics}); err != nil {
		t.Fatal(err)
	}
}
