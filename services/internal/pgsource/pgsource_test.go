package pgsource_test

import (
	"context"
	"strings"
	"testing"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/internal/pgsource"
	"github.com/ferry-cdc/ferry/services/testenv"
)

// Values decode exactly only if every Ferry session prints them the same way,
// whatever the server's defaults.
func TestSessionsUseFixedOutputSettings(t *testing.T) {
	conn := testenv.PG(t)
	for setting, want := range map[string]string{"TimeZone": "UTC", "DateStyle": "ISO, MDY", "IntervalStyle": "postgres", "extra_float_digits": "3"} {
		var got string
		if err := conn.QueryRow(context.Background(), "SELECT current_setting($1)", setting).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s = %q, want %q", setting, got, want)
		}
	}
	var app string
	if err := conn.QueryRow(context.Background(), "SELECT current_setting('application_name')").Scan(&app); err != nil || app != pgsource.ApplicationName {
		t.Errorf("application_name = %q, %v; want %q", app, err, pgsource.ApplicationName)
	}
}

func TestDSNQuotesAwkwardNamesAndHidesNothingItShouldNot(t *testing.T) {
	t.Setenv("FERRY_TEST_PW", "p@ss word/")
	dsn, err := pgsource.DSN(&taskv1.SourceEndpoint{
		Host: "db", Database: "my-db", User: "u",
		Password: &taskv1.SecretRef{Source: &taskv1.SecretRef_Env{Env: "FERRY_TEST_PW"}},
	}, true)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(dsn, "/my-db?") || !strings.Contains(dsn, "replication=database") || !strings.Contains(dsn, "db:5432") {
		t.Errorf("dsn %q lacks the database, the replication mode or the default port", dsn)
	}
	if d := pgsource.Describe(&taskv1.SourceEndpoint{Host: "db", Database: "x", User: "u"}); strings.Contains(d, "p@ss") {
		t.Errorf("Describe leaks the password: %q", d)
	}
	if _, err := pgsource.DSN(&taskv1.SourceEndpoint{Host: "db"}, false); err == nil || !strings.Contains(err.Error(), "database") {
		t.Errorf("missing database: err = %v", err)
	}
}
