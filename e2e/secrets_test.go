package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// A caller of the control API cannot make a service read a file or variable
// outside its secret settings and send it to a host of the caller's choice.
func TestSecretReferencesStayInsideTheServicesSettings(t *testing.T) {
	conn := pgConnect(t)
	f := startFerry(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	table := uniqueName("e2e_secret")
	spec := func(pw *taskv1.SecretRef) *taskv1.TaskSpec {
		src := sourceEndpoint()
		src.Password = pw
		return &taskv1.TaskSpec{
			Name: "secrets", Source: src,
			Destination: &taskv1.KafkaEndpoint{BootstrapServers: kafkaBootstrap(), Topic: table},
			Objects:     &taskv1.ObjectSelection{Tables: []*taskv1.TableSelection{{Schema: "public", Table: table}}},
			SyncTypes:   &taskv1.SyncTypes{Schema: true},
			Advanced:    &taskv1.AdvancedOptions{ConnectionRetryMinutes: 10, OtherRetryMinutes: 2},
		}
	}

	_, err := f.control.PrecheckTask(ctx, &taskv1.PrecheckTaskRequest{Spec: spec(&taskv1.SecretRef{Source: &taskv1.SecretRef_File{File: "/etc/hostname"}})})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "source.password") || !strings.Contains(err.Error(), "FERRY_SECRET_DIRS") {
		t.Fatalf("PrecheckTask with /etc/hostname as the password: want InvalidArgument naming source.password and FERRY_SECRET_DIRS, got %v", err)
	}

	taskID := strings.ReplaceAll(table, "_", "-")
	if _, err := f.control.CreateTask(ctx, &taskv1.CreateTaskRequest{TaskId: taskID,
		Spec: spec(&taskv1.SecretRef{Source: &taskv1.SecretRef_Env{Env: "HOME"}})}); err != nil {
		t.Fatalf("CreateTask: %v", err)
	}
	f.cleanupTask(conn, taskID)
	eventually(t, 60*time.Second, "the task to fail on its password reference", func() (bool, string) {
		st := f.state(taskID)
		return st.GetStatus() == taskv1.Status_STATUS_FAILED && strings.Contains(st.GetLastError(), "FERRY_SECRET_ENV_PREFIX"),
			st.GetStatus().String() + ", last error: " + st.GetLastError()
	})
	t.Logf("the task failed with: %s", f.state(taskID).GetLastError())
	var slots int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1`, slotName(taskID)).Scan(&slots); err != nil || slots != 0 {
		t.Fatalf("a task refused at its precheck left %d slots (err %v)", slots, err)
	}
}
