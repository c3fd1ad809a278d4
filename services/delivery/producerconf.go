package delivery

import (
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// ProducerConfig is the librdkafka configuration a Deliver stream without
// exactly_once uses for the endpoint and options, when every topic of the
// task allows topicMaxBytes (max.message.bytes). It is exported for the
// benchmark (bench/cmd/ferrybench), whose baseline producer must run with
// exactly delivery's settings rather than a copy that drifts.
func ProducerConfig(ep *taskv1.KafkaEndpoint, opts *taskv1.KafkaOptions, topicMaxBytes int) (kafka.ConfigMap, error) {
	return producerConfig(ep, opts, topicMaxBytes, topicMaxBytes)
}
