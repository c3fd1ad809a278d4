package delivery

import (
	"context"
	"slices"
	"strings"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// Precheck item ids of the Kafka side.
const (
	checkKafkaConnect  = "kafka_connectivity"
	checkTopicsExist   = "kafka_topics_exist"
	checkTopicConflict = "kafka_topic_conflict"
)

// CheckTopics reports, as precheck items, whether Kafka is reachable, whether
// the task's topics exist or will be created, and whether an existing topic
// conflicts with schema sync under the task's conflict mode.
func (s *Server) CheckTopics(ctx context.Context, req *deliveryv1.CheckTopicsRequest) (*deliveryv1.CheckTopicsResponse, error) {
	names := topicNames(req.GetTopics())
	conn, err := dialKafka(ctx, s.logger, req.GetKafka())
	if err != nil {
		return &deliveryv1.CheckTopicsResponse{Items: []*taskv1.PrecheckItem{{
			Id: checkKafkaConnect, Severity: taskv1.Severity_SEVERITY_FAIL,
			Message: status.Convert(err).Message(),
			Fix:     "check destination.bootstrap_servers, the security settings and that the brokers run",
		}}}, nil
	}
	defer conn.Close()
	existing, err := existingTopics(conn.admin, names)
	if err != nil {
		return nil, err
	}
	var missing, present []string
	for _, n := range names {
		if existing[n] {
			present = append(present, n)
		} else {
			missing = append(missing, n)
		}
	}
	items := []*taskv1.PrecheckItem{{Id: checkKafkaConnect, Severity: taskv1.Severity_SEVERITY_PASS,
		Message: "Kafka at " + req.GetKafka().GetBootstrapServers() + " answers"}}
	exist := &taskv1.PrecheckItem{Id: checkTopicsExist, Severity: taskv1.Severity_SEVERITY_PASS}
	switch {
	case len(missing) == 0:
		exist.Message = "every topic exists: " + strings.Join(present, ", ")
	case req.GetCreateMissing():
		exist.Message = "schema sync will create " + strings.Join(missing, ", ")
	default:
		exist.Severity = taskv1.Severity_SEVERITY_FAIL
		exist.Message = "topics missing in Kafka: " + strings.Join(missing, ", ")
		exist.Fix = "create them, or enable sync_types.schema so that Ferry creates them"
	}
	items = append(items, exist)
	if req.GetCreateMissing() {
		items = append(items, conflictItem(present, req.GetConflictMode()))
	}
	return &deliveryv1.CheckTopicsResponse{Items: items}, nil
}

// conflictItem applies the conflict mode to the topics schema sync would
// have created but found.
func conflictItem(present []string, mode taskv1.ConflictMode) *taskv1.PrecheckItem {
	it := &taskv1.PrecheckItem{Id: checkTopicConflict, Severity: taskv1.Severity_SEVERITY_PASS}
	switch {
	case len(present) == 0:
		it.Message = "no topic exists yet"
	case mode == taskv1.ConflictMode_CONFLICT_MODE_IGNORE:
		it.Message = "topics exist already and will be written into (conflict mode IGNORE): " + strings.Join(present, ", ")
	default:
		it.Severity = taskv1.Severity_SEVERITY_FAIL
		it.Message = "topics exist already: " + strings.Join(present, ", ")
		it.Fix = "set kafka.conflict_mode to CONFLICT_MODE_IGNORE to write into them, delete them, or choose other topics"
	}
	return it
}

func topicNames(topics []*deliveryv1.TopicSpec) []string {
	var out []string
	for _, t := range topics {
		if n := t.GetName(); n != "" && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// existingTopics reports which of names exist in the cluster.
func existingTopics(admin *kafka.AdminClient, names []string) (map[string]bool, error) {
	md, err := admin.GetMetadata(nil, true, 10_000)
	if err != nil {
		return nil, kafkaStatus(err, "reading the cluster's topics")
	}
	out := map[string]bool{}
	for _, n := range names {
		tm, ok := md.Topics[n]
		out[n] = ok && tm.Error.Code() == kafka.ErrNoError
	}
	return out, nil
}

// verifyTopics is EnsureTopics for a task without schema sync: every topic
// must exist already.
func (s *Server) verifyTopics(ctx context.Context, req *deliveryv1.EnsureTopicsRequest) (*deliveryv1.EnsureTopicsResponse, error) {
	conn, err := dialKafka(ctx, s.logger, req.GetKafka())
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	names := topicNames(req.GetTopics())
	existing, err := existingTopics(conn.admin, names)
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, n := range names {
		if !existing[n] {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return nil, status.Errorf(codes.FailedPrecondition,
			"topics missing in Kafka: %s; create them, or enable sync_types.schema so that Ferry creates them", strings.Join(missing, ", "))
	}
	if err := waitVisible(ctx, conn.admin, names); err != nil {
		return nil, err
	}
	return &deliveryv1.EnsureTopicsResponse{Existing: names}, nil
}
