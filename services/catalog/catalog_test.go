package catalog

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	catalogv1 "github.com/ferry-cdc/ferry/gen/ferry/catalog/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/testenv"
)

func severities(items []*taskv1.PrecheckItem) map[string]taskv1.Severity {
	out := map[string]taskv1.Severity{}
	for _, it := range items {
		out[it.GetId()] = it.GetSeverity()
	}
	return out
}

func TestPrecheckOnRealPostgres(t *testing.T) {
	conn := testenv.PG(t)
	schema := testenv.UniqueName("Cat-Schema")
	keyed, keyless := "With-Key", "no_key"
	testenv.Exec(t, conn,
		`CREATE SCHEMA "`+schema+`"`,
		`CREATE TABLE "`+schema+`"."`+keyed+`" (id int PRIMARY KEY)`,
		`CREATE TABLE "`+schema+`"."`+keyless+`" (v text)`)
	t.Cleanup(func() { testenv.Exec(t, conn, `DROP SCHEMA "`+schema+`" CASCADE`) })

	s := NewServer(slog.Default())
	res, err := s.Precheck(context.Background(), &catalogv1.PrecheckRequest{
		Source:  testenv.Source(t),
		Objects: &taskv1.ObjectSelection{Schemas: []*taskv1.SchemaSelection{{Schema: schema}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := severities(res.GetItems())
	pass := taskv1.Severity_SEVERITY_PASS
	for _, id := range []string{"connectivity", "server_version", "wal_level", "replication_privilege",
		"max_replication_slots", "max_wal_senders", "objects", "select_privilege", "greenplum"} {
		if got[id] != pass {
			t.Errorf("%s = %v, want PASS (items: %v)", id, got[id], res.GetItems())
		}
	}
	if got["primary_key"] != taskv1.Severity_SEVERITY_WARN {
		t.Errorf("primary_key = %v, want WARN for the keyless table", got["primary_key"])
	}
	for _, it := range res.GetItems() {
		if it.GetId() == "primary_key" && (!strings.Contains(it.GetMessage(), keyless) || strings.Contains(it.GetMessage(), keyed)) {
			t.Errorf("primary_key message %q should name only %s", it.GetMessage(), keyless)
		}
	}
}

func TestPrecheckReportsBadCredentialsAsFailedItem(t *testing.T) {
	src := testenv.Source(t)
	src.Password = &taskv1.SecretRef{Source: &taskv1.SecretRef_Env{Env: "FERRY_TEST_WRONG_PASSWORD"}}
	t.Setenv("FERRY_TEST_WRONG_PASSWORD", "not-the-password")
	res, err := NewServer(slog.Default()).Precheck(context.Background(), &catalogv1.PrecheckRequest{Source: src})
	if err != nil {
		t.Fatal(err)
	}
	items := res.GetItems()
	if len(items) != 1 || items[0].GetId() != "connectivity" || items[0].GetSeverity() != taskv1.Severity_SEVERITY_FAIL || items[0].GetFix() == "" {
		t.Fatalf("items = %v, want one failed connectivity item with a fix", items)
	}
	if strings.Contains(items[0].GetMessage(), "not-the-password") {
		t.Fatalf("the precheck message leaks the password: %q", items[0].GetMessage())
	}
}

func TestResolveTables(t *testing.T) {
	conn := testenv.PG(t)
	schema := testenv.UniqueName("resolve")
	testenv.Exec(t, conn,
		`CREATE SCHEMA `+schema,
		`CREATE TABLE `+schema+`."Order-Items" (id int PRIMARY KEY)`,
		`CREATE TABLE `+schema+`.parted (id int, at date) PARTITION BY RANGE (at)`,
		`CREATE TABLE `+schema+`.parted_2026 PARTITION OF `+schema+`.parted FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')`,
		`INSERT INTO `+schema+`."Order-Items" SELECT generate_series(1, 300)`,
		`INSERT INTO `+schema+`.parted SELECT g, '2026-05-01' FROM generate_series(1, 200) g`,
		`ANALYZE `+schema+`."Order-Items", `+schema+`.parted`)
	t.Cleanup(func() { testenv.Exec(t, conn, `DROP SCHEMA `+schema+` CASCADE`) })
	s := NewServer(slog.Default())

	res, err := s.ResolveTables(context.Background(), &catalogv1.ResolveTablesRequest{
		Source:  testenv.Source(t),
		Objects: &taskv1.ObjectSelection{Schemas: []*taskv1.SchemaSelection{{Schema: schema}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tr := range res.GetTables() {
		names = append(names, tr.GetTable())
	}
	// Partitions are published through their root, so only the root is listed.
	if strings.Join(names, ",") != "Order-Items,parted" {
		t.Fatalf("resolved %v, want [Order-Items parted]", names)
	}
	// ANALYZE counts small tables exactly; the partitioned root sums its leaves.
	if got := res.GetEstimatedRows(); len(got) != 2 || got[0] != 300 || got[1] != 200 {
		t.Fatalf("estimated rows %v, want [300 200]", got)
	}
	if got := res.GetHasPrimaryKey(); len(got) != 2 || !got[0] || got[1] {
		t.Fatalf("has primary key %v, want [true false]", got)
	}

	_, err = s.ResolveTables(context.Background(), &catalogv1.ResolveTablesRequest{
		Source:  testenv.Source(t),
		Objects: &taskv1.ObjectSelection{Tables: []*taskv1.TableSelection{{Schema: schema, Table: "missing"}}},
	})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `"missing"`) {
		t.Fatalf("missing table: err = %v, want InvalidArgument naming the table", err)
	}
}

func TestPrecheckSchemaRegistryReal(t *testing.T) {
	s := NewServer(slog.Default())
	find := func(dest *taskv1.KafkaEndpoint) *taskv1.PrecheckItem {
		t.Helper()
		res, err := s.Precheck(context.Background(), &catalogv1.PrecheckRequest{
			Source: testenv.Source(t), Objects: &taskv1.ObjectSelection{Schemas: []*taskv1.SchemaSelection{{Schema: "public"}}},
			Destination: dest,
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range res.GetItems() {
			if it.GetId() == "schema_registry" {
				return it
			}
		}
		return nil
	}
	if it := find(&taskv1.KafkaEndpoint{}); it != nil {
		t.Fatalf("no registry configured, yet the precheck reports %v", it)
	}
	it := find(&taskv1.KafkaEndpoint{SchemaRegistryUrl: testenv.SchemaRegistryURL(t)})
	if it.GetSeverity() != taskv1.Severity_SEVERITY_PASS {
		t.Fatalf("the local registry: %v, want PASS (start the local stack with `make up`)", it)
	}
	// Something that answers HTTP but not the Confluent API there: the
	// registry's own root, without /apis/ccompat/v7.
	root := strings.TrimSuffix(testenv.SchemaRegistryURL(t), "/apis/ccompat/v7")
	for bad, say := range map[string]string{
		root + "/not-an-api": root + "/not-an-api", // answers 404
		"http://127.0.0.1:1": "unreachable",
		"127.0.0.1:58081":    "destination.schema_registry_url",
	} {
		it := find(&taskv1.KafkaEndpoint{SchemaRegistryUrl: bad})
		if it.GetSeverity() != taskv1.Severity_SEVERITY_FAIL || it.GetFix() == "" || !strings.Contains(it.GetMessage(), say) {
			t.Errorf("%s: %v, want FAIL saying %q, with a fix", bad, it, say)
		}
	}
}
