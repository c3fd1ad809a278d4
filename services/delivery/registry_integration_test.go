package delivery

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/testenv"
)

// registryGet fetches a path of the local schema registry's Confluent API,
// independently of the registry package, and decodes the JSON answer.
func registryGet(t *testing.T, path string, out any) int {
	t.Helper()
	resp, err := http.Get(testenv.SchemaRegistryURL(t) + path)
	if err != nil {
		t.Fatalf("the local schema registry is required (start the local stack with `make up`): %v", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
	}
	return resp.StatusCode
}

// TestDeliverDTSAvroWithRegistryReal delivers DTS Avro to two topics of the
// real Kafka with the real schema registry configured, and reads the
// messages back as a Confluent consumer would: magic byte, schema id, the
// schema fetched by that id, then the payload decoded with it.
func TestDeliverDTSAvroWithRegistryReal(t *testing.T) {
	bootstrap := realKafka(t)
	var subjects []string
	if code := registryGet(t, "/subjects", &subjects); code != http.StatusOK {
		t.Fatalf("the local schema registry answered %d to GET /subjects; start the local stack with `make up`", code)
	}
	client, _ := startServer(t)
	orders, items := testenv.UniqueName("ferry_sr_orders"), testenv.UniqueName("ferry_sr_items")
	ensure(t, client, bootstrap, &deliveryv1.TopicSpec{Name: orders, Partitions: 2}, &deliveryv1.TopicSpec{Name: items})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	st := start(bootstrap, orders, &taskv1.KafkaOptions{Format: taskv1.DataFormat_DATA_FORMAT_DTS_AVRO,
		PartitionPolicy: taskv1.PartitionPolicy_PARTITION_POLICY_HASH_PRIMARY_KEY})
	st.Kafka.SchemaRegistryUrl = testenv.SchemaRegistryURL(t)
	// Schema sync writes a CREATE record to each table's topic: DDL Records
	// share the data topics, so they must be framed too.
	st.WriteTableDefinitions = true
	st.Objects = &taskv1.ObjectSelection{Tables: []*taskv1.TableSelection{
		{Schema: "public", Table: "orders"}, {Schema: "public", Table: "items", Topic: items}}}
	s := openSession(t, ctx, client, st)

	itemsRel := ordersRelation()
	itemsRel.Oid, itemsRel.Table = ordersOID+1, "items"
	itemRow := insert(9, "i", 93)
	itemRow.RelationOid = itemsRel.Oid
	s.send(&cdcv1.ChangeBatch{Relations: []*cdcv1.Relation{ordersRelation(), itemsRel},
		Events: []*cdcv1.ChangeEvent{insert(1, "a", 90), insert(2, "b", 91), itemRow}, WatermarkLsn: 100})
	last, err := s.finish(30 * time.Second)
	if err != nil {
		t.Fatalf("stream ended with %v", err)
	}
	if last.GetSafeLsn() != 100 || last.GetAckedEvents() != 5 { // 3 rows, 2 CREATE records
		t.Fatalf("final response %v, want safe 100 acked 5", last)
	}

	ddls := map[string]int{}
	for topic, n := range map[string]int{orders: 3, items: 2} {
		var latest struct{ ID uint32 }
		if code := registryGet(t, "/subjects/"+url.PathEscape(topic+"-value")+"/versions/latest", &latest); code != http.StatusOK {
			t.Fatalf("subject %s-value: HTTP %d; want it registered", topic, code)
		}
		for _, m := range consume(t, bootstrap, topic, n, 30*time.Second) {
			r, id := decodeConfluent(t, m.Value)
			if id != latest.ID {
				t.Fatalf("message on %s carries schema id %d, subject %s-value's latest is %d", topic, id, topic, latest.ID)
			}
			if r["operation"] == "DDL" {
				ddls[topic]++
				continue
			}
			if topic == items {
				if r["objectName"].(map[string]any)["string"] != "shop.public.items" {
					t.Fatalf("items message %v", r)
				}
				continue
			}
			checkAvroMessage(t, r, string(m.Key))
		}
	}
	if ddls[orders] != 1 || ddls[items] != 1 {
		t.Fatalf("DDL Records per topic %v, want one CREATE on each", ddls)
	}
}

// decodeConfluent checks the wire-format header, fetches the writer's
// schema by its id, and decodes the payload with goavro.
func decodeConfluent(t *testing.T, v []byte) (map[string]any, uint32) {
	t.Helper()
	if len(v) < 5 || v[0] != 0 {
		t.Fatalf("value % x does not start with the magic byte 0 and a schema id", v[:min(len(v), 8)])
	}
	id := uint32(v[1])<<24 | uint32(v[2])<<16 | uint32(v[3])<<8 | uint32(v[4])
	var sch struct{ Schema string }
	if code := registryGet(t, "/schemas/ids/"+strconv.FormatUint(uint64(id), 10), &sch); code != http.StatusOK {
		t.Fatalf("GET /schemas/ids/%d: HTTP %d; the header's id is unknown to the registry", id, code)
	}
	codec, err := goavro.NewCodec(sch.Schema)
	if err != nil {
		t.Fatalf("schema %d from the registry: %v", id, err)
	}
	native, rest, err := codec.NativeFromBinary(v[5:])
	if err != nil || len(rest) != 0 {
		t.Fatalf("decoding with schema %d: %v (%d bytes left)", id, err, len(rest))
	}
	return native.(map[string]any), id
}

// TestRegistryRefusedOrUnreachableStopsTheStream checks that a schema
// registry with Canal JSON is refused, and that an unreachable one fails the
// stream before any row as retryable (Unavailable), naming it.
func TestRegistryRefusedOrUnreachableStopsTheStream(t *testing.T) {
	bootstrap := fakeKafka(t, 1, "orders")
	client, _ := startServer(t)
	for _, tc := range []struct {
		format taskv1.DataFormat
		url    string
		want   codes.Code
	}{
		{taskv1.DataFormat_DATA_FORMAT_CANAL_JSON, testenv.SchemaRegistryURL(t), codes.InvalidArgument},
		{taskv1.DataFormat_DATA_FORMAT_DTS_AVRO, "http://127.0.0.1:1/apis/ccompat/v7", codes.Unavailable},
		{taskv1.DataFormat_DATA_FORMAT_DTS_AVRO, "127.0.0.1:58081", codes.InvalidArgument},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		st := start(bootstrap, "orders", &taskv1.KafkaOptions{Format: tc.format})
		st.Kafka.SchemaRegistryUrl = tc.url
		s := openSession(t, ctx, client, st)
		_, err := s.finish(20 * time.Second)
		cancel()
		if status.Code(err) != tc.want {
			t.Fatalf("%v with %q: err = %v, want %v", tc.format, tc.url, err, tc.want)
		}
		for _, want := range map[codes.Code][]string{
			codes.InvalidArgument: {"destination.schema_registry_url"},
			codes.Unavailable:     {tc.url, "orders-value"},
		}[tc.want] {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%v with %q: error %q does not name %q", tc.format, tc.url, err, want)
			}
		}
	}
}
