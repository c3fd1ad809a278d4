package activities

import (
	"strings"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// tableFilters lists the row filters of spec's tables
// (objects.tables[].filter) for the publication. Full sync and backfills
// need no copy: capture reads each filter back from the publication, in
// the snapshot it reads the table in.
func tableFilters(spec *taskv1.TaskSpec) []*capturev1.TableFilter {
	var out []*capturev1.TableFilter
	for _, t := range spec.GetObjects().GetTables() {
		if f := strings.TrimSpace(t.GetFilter()); f != "" {
			out = append(out, &capturev1.TableFilter{Table: &taskv1.TableRef{Schema: t.GetSchema(), Table: t.GetTable()}, Filter: f})
		}
	}
	return out
}
