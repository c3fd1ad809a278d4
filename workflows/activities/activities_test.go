package activities

import (
	"reflect"
	"slices"
	"testing"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/taskapi"
)

func TestTopicsForListsEveryTopicOnce(t *testing.T) {
	spec := &taskv1.TaskSpec{
		Destination: &taskv1.KafkaEndpoint{Topic: "data"},
		Objects: &taskv1.ObjectSelection{Tables: []*taskv1.TableSelection{
			{Schema: "public", Table: "a", Topic: "orders", Partitions: 4},
			{Schema: "public", Table: "b", Partitions: 3},
			{Schema: "public", Table: "c", Topic: "orders", Partitions: 2},
		}},
		Kafka: &taskv1.KafkaOptions{DdlTopic: "orders", DeadLetterTopic: "big-rows"},
	}
	got := map[string]uint32{}
	var order []string
	for _, ts := range TopicsFor(spec) {
		if _, dup := got[ts.GetName()]; dup {
			t.Fatalf("topic %s listed twice", ts.GetName())
		}
		got[ts.GetName()] = ts.GetPartitions()
		order = append(order, ts.GetName())
	}
	want := map[string]uint32{"data": 3, "orders": 4, "big-rows": 1}
	if len(got) != len(want) {
		t.Fatalf("topics %v, want %v", got, want)
	}
	for name, n := range want {
		if got[name] != n {
			t.Fatalf("topic %s: %d partitions, want %d (all: %v, order %v)", name, got[name], n, got, order)
		}
	}
}

// The workflow schedules activities by name (taskapi.Activity*) and the
// worker registers Activities' methods under their own names: the two lists
// must match, or a workflow would schedule an activity no worker has, and
// recorded histories would no longer replay.
func TestRegisteredNamesAreTheMethodsOfActivities(t *testing.T) {
	names := []string{taskapi.ActivityPrecheck, taskapi.ActivitySetup, taskapi.ActivityFullSync, taskapi.ActivityIncremental,
		taskapi.ActivityModify, taskapi.ActivityApplyThrottle, taskapi.ActivityAlert, taskapi.ActivityRelease}
	typ := reflect.TypeFor[*Activities]()
	var methods []string
	for m := range typ.Methods() {
		methods = append(methods, m.Name)
	}
	slices.Sort(names)
	if !slices.Equal(methods, names) {
		t.Fatalf("methods of Activities %v, names the workflow schedules %v", methods, names)
	}
}
