package catalog

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	catalogv1 "github.com/ferry-cdc/ferry/gen/ferry/catalog/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/taskapi"
	"github.com/ferry-cdc/ferry/services/delivery/registry"
	"github.com/ferry-cdc/ferry/services/internal/pgsource"
)

// MinServerVersion is PostgreSQL 12: pgoutput with publish_via_partition_root
// and the catalog columns these checks read.
const MinServerVersion = 120000

// Precheck reports every item as pass, warn or fail. A source that cannot be
// reached is itself a failed item, not an RPC error, so the caller sees why.
func (s *Server) Precheck(ctx context.Context, req *catalogv1.PrecheckRequest) (*catalogv1.PrecheckResponse, error) {
	src := req.GetSource()
	conn, err := pgsource.Connect(ctx, src)
	if err != nil {
		return &catalogv1.PrecheckResponse{Items: append([]*taskv1.PrecheckItem{
			fail("connectivity", err.Error(), "check the source host, port, user, password secret and pg_hba.conf"),
		}, checkSchemaRegistry(ctx, req.GetDestination())...)}, nil
	}
	defer func() { _ = conn.Close(context.Background()) }()
	start := time.Now()
	items := []*taskv1.PrecheckItem{pass("connectivity", "connected to "+pgsource.Describe(src))}
	for _, check := range []func(context.Context, *pgx.Conn) *taskv1.PrecheckItem{
		checkVersion, checkGreenplum, checkWalLevel, checkReplicationPrivilege, checkSlotRoom, checkSenderRoom,
		checkDatabaseName, checkTemporaryTables,
	} {
		items = append(items, check(ctx, conn))
	}
	items = append(items, checkHighAvailability(ctx, conn)...)
	items = checkFailover(ctx, conn, src, items)
	items = append(items, checkLongTransactions(ctx, conn, s.longTransactionAge))
	items = append(items, checkPublicationPrivilege(ctx, conn, req.GetObjects()))
	items = append(items, s.checkTables(ctx, conn, req.GetObjects())...)
	items = append(items, checkRowFilters(ctx, conn, req.GetObjects()))
	items = append(items, checkSignalTable(ctx, conn, hasFilters(req.GetObjects())))
	items = append(items, checkSchemaRegistry(ctx, req.GetDestination())...)
	s.logger.Info("precheck done", "source", pgsource.Describe(src), "items", len(items), "took", time.Since(start))
	return &catalogv1.PrecheckResponse{Items: items}, nil
}

// WarningIDs lists the precheck items that can be warnings, and so the ids a
// task spec may list in acknowledged_warnings.
func WarningIDs() []string {
	return []string{
		"primary_key", "replica_identity", "toast", "row_size", "database_name", "hot_standby", "hot_standby_feedback",
		"sync_replication_slots", "synchronized_standby_slots", "failover_slot", "long_transactions", "temporary_tables",
		"unlogged_tables", greenplumID, taskapi.AcksID,
	}
}

func item(id string, sev taskv1.Severity, msg, fix string) *taskv1.PrecheckItem {
	return &taskv1.PrecheckItem{Id: id, Severity: sev, Message: msg, Fix: fix}
}

func pass(id, msg string) *taskv1.PrecheckItem {
	return item(id, taskv1.Severity_SEVERITY_PASS, msg, "")
}

func fail(id, msg, fix string) *taskv1.PrecheckItem {
	return item(id, taskv1.Severity_SEVERITY_FAIL, msg, fix)
}

func queryFailed(id string, err error) *taskv1.PrecheckItem {
	return fail(id, fmt.Sprintf("could not check: %v", err), "make sure the user can read the system catalogs (pg_settings, pg_roles, pg_class, pg_stat_activity), then run the precheck again")
}

func checkVersion(ctx context.Context, conn *pgx.Conn) *taskv1.PrecheckItem {
	var num int
	var version string
	if err := conn.QueryRow(ctx, `SELECT current_setting('server_version_num')::int, version()`).Scan(&num, &version); err != nil {
		return queryFailed("server_version", err)
	}
	if num < MinServerVersion {
		return fail("server_version", fmt.Sprintf("the source runs %s", version),
			"upgrade to PostgreSQL 12 or later, or AnalyticDB for PostgreSQL 7 / Greenplum 7")
	}
	return pass("server_version", version)
}

func checkWalLevel(ctx context.Context, conn *pgx.Conn) *taskv1.PrecheckItem {
	var level string
	if err := conn.QueryRow(ctx, `SELECT current_setting('wal_level')`).Scan(&level); err != nil {
		return queryFailed("wal_level", err)
	}
	if level != "logical" {
		return fail("wal_level", fmt.Sprintf("wal_level is %q; logical decoding needs 'logical'", level),
			"run ALTER SYSTEM SET wal_level = logical and restart PostgreSQL")
	}
	return pass("wal_level", "wal_level is logical")
}

func checkReplicationPrivilege(ctx context.Context, conn *pgx.Conn) *taskv1.PrecheckItem {
	r, err := readRole(ctx, conn)
	if err != nil {
		return queryFailed("replication_privilege", err)
	}
	user := r.GetRole()
	if !r.GetReplication() && !r.GetSuperuser() {
		return fail("replication_privilege", fmt.Sprintf("role %q lacks the REPLICATION attribute", user),
			fmt.Sprintf("run ALTER ROLE %s WITH REPLICATION", pgx.Identifier{user}.Sanitize()))
	}
	return pass("replication_privilege", fmt.Sprintf("role %q may replicate", user))
}

func checkSlotRoom(ctx context.Context, conn *pgx.Conn) *taskv1.PrecheckItem {
	var max, used int
	if err := conn.QueryRow(ctx, `SELECT current_setting('max_replication_slots')::int, (SELECT count(*) FROM pg_replication_slots)`).Scan(&max, &used); err != nil {
		return queryFailed("max_replication_slots", err)
	}
	if used >= max {
		return fail("max_replication_slots", fmt.Sprintf("all %d replication slots are in use", max),
			"drop unused slots (see pg_replication_slots) or raise max_replication_slots and restart")
	}
	return pass("max_replication_slots", fmt.Sprintf("%d of %d replication slots in use", used, max))
}

func checkSenderRoom(ctx context.Context, conn *pgx.Conn) *taskv1.PrecheckItem {
	var max, used int
	if err := conn.QueryRow(ctx, `SELECT current_setting('max_wal_senders')::int, (SELECT count(*) FROM pg_stat_replication)`).Scan(&max, &used); err != nil {
		return queryFailed("max_wal_senders", err)
	}
	if used >= max {
		return fail("max_wal_senders", fmt.Sprintf("all %d WAL senders are in use", max),
			"raise max_wal_senders and restart, or stop other replication clients")
	}
	return pass("max_wal_senders", fmt.Sprintf("%d of %d WAL senders in use", used, max))
}

// registryTimeout bounds the schema registry check.
const registryTimeout = 5 * time.Second

// checkSchemaRegistry reports whether the configured schema registry's
// Confluent-compatible API answers; nothing when none is configured.
func checkSchemaRegistry(ctx context.Context, dest *taskv1.KafkaEndpoint) []*taskv1.PrecheckItem {
	const id = "schema_registry"
	raw := dest.GetSchemaRegistryUrl()
	if raw == "" {
		return nil
	}
	c, err := registry.New(raw, registry.Options{Timeout: registryTimeout})
	if err != nil {
		return []*taskv1.PrecheckItem{fail(id, "destination.schema_registry_url: "+err.Error(),
			"set destination.schema_registry_url to http(s)://host:port[/path]")}
	}
	if err := c.Ping(ctx); err != nil {
		return []*taskv1.PrecheckItem{fail(id, err.Error(),
			"start the schema registry or fix destination.schema_registry_url: it must be the root of a Confluent-compatible API "+
				"(http://host:8081 for Confluent, http://host:8080/apis/ccompat/v7 for Apicurio) reachable from Ferry's services")}
	}
	return []*taskv1.PrecheckItem{pass(id, "the schema registry at "+c.URL()+" answers")}
}
