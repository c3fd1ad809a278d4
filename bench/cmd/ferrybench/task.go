package main

import (
	"context"
	"fmt"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/jackc/pgx/v5"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/taskapi"
)

// ferrySlot is the slot name Ferry derives from a task ID.
func ferrySlot(taskID string) string {
	return taskapi.ReplicationName(taskID)
}

func (f *ferry) createTask(ctx context.Context, c *config, taskID, topic, table string, kafka *taskv1.KafkaOptions) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err := f.control.CreateTask(ctx, &taskv1.CreateTaskRequest{TaskId: taskID, Spec: &taskv1.TaskSpec{
		Name: "ferrybench " + table,
		Source: &taskv1.SourceEndpoint{
			Host: c.pgHost, Port: uint32(c.pgPort), Database: c.pgDatabase, User: "ferry",
			// A file reference: the password never enters the task's history.
			Password: &taskv1.SecretRef{Source: &taskv1.SecretRef_File{File: c.pgPasswordFile}},
		},
		Destination: &taskv1.KafkaEndpoint{BootstrapServers: c.kafkaBootstrap, Topic: topic},
		Objects:     &taskv1.ObjectSelection{Tables: []*taskv1.TableSelection{{Schema: "public", Table: table}}},
		SyncTypes:   &taskv1.SyncTypes{Schema: true},
		Kafka:       kafka,
		Advanced:    &taskv1.AdvancedOptions{ConnectionRetryMinutes: 10, OtherRetryMinutes: 2},
	}})
	if err != nil {
		return fmt.Errorf("CreateTask %s: %w", taskID, err)
	}
	return nil
}

func (f *ferry) state(ctx context.Context, taskID string) *taskv1.TaskState {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := f.control.GetTask(ctx, &taskv1.GetTaskRequest{TaskId: taskID})
	if err != nil {
		return &taskv1.TaskState{LastError: "GetTask: " + err.Error()}
	}
	return res.GetState()
}

func describe(st *taskv1.TaskState) string {
	return fmt.Sprintf("phase %s status %s error %q", st.GetPhase(), st.GetStatus(), st.GetLastError())
}

// waitSlot waits until Ferry's slot exists and its active flag is want: true
// once incremental sync streams, false once a pause has let go of it.
func (f *ferry) waitSlot(ctx context.Context, conn *pgx.Conn, taskID string, want bool) error {
	slot := ferrySlot(taskID)
	return poll(ctx, 60*time.Second, 100*time.Millisecond, fmt.Sprintf("slot %s active=%v", slot, want), func() (bool, string, error) {
		s, err := readSlot(ctx, conn, slot)
		if err != nil {
			return false, "", err
		}
		st := f.state(ctx, taskID)
		ok := s.exists && s.active == want
		if want {
			ok = ok && st.GetPhase() == taskv1.Phase_PHASE_INCREMENTAL
		}
		return ok, fmt.Sprintf("slot exists %v active %v; %s", s.exists, s.active, describe(st)), nil
	})
}

func (f *ferry) pause(ctx context.Context, conn *pgx.Conn, taskID string) error {
	if _, err := f.control.PauseTask(ctx, &taskv1.PauseTaskRequest{TaskId: taskID}); err != nil {
		return fmt.Errorf("PauseTask %s: %w", taskID, err)
	}
	return f.waitSlot(ctx, conn, taskID, false)
}

func (f *ferry) resume(ctx context.Context, taskID string) error {
	if _, err := f.control.ResumeTask(ctx, &taskv1.ResumeTaskRequest{TaskId: taskID}); err != nil {
		return fmt.Errorf("ResumeTask %s: %w", taskID, err)
	}
	return nil
}

// stopAndRelease stops the task, has Ferry drop its slot and publication,
// and waits until the workflow reports it stopped, so that no task outlives
// the processes that run it.
func (f *ferry) stopAndRelease(ctx context.Context, conn *pgx.Conn, taskID string) error {
	if _, err := f.control.StopTask(ctx, &taskv1.StopTaskRequest{TaskId: taskID, Release: true}); err != nil {
		return fmt.Errorf("StopTask %s: %w", taskID, err)
	}
	slot := ferrySlot(taskID)
	return poll(ctx, 60*time.Second, 200*time.Millisecond, "task "+taskID+" to stop and release", func() (bool, string, error) {
		s, err := readSlot(ctx, conn, slot)
		if err != nil {
			return false, "", err
		}
		st := f.state(ctx, taskID)
		return !s.exists && st.GetPhase() == taskv1.Phase_PHASE_STOPPED, fmt.Sprintf("slot exists %v; %s", s.exists, describe(st)), nil
	})
}

// drainTimes are the two ends of Ferry's catch-up, both from ResumeTask:
// when Kafka holds n messages, and when the slot is confirmed past the
// backlog, which is when Ferry knows Kafka acknowledged all of it.
type drainTimes struct {
	toKafka, toConfirmed time.Duration
	// toStreaming is when the slot was first seen active: the resume's own
	// cost (reconnecting, restarting the stream), inside both figures.
	toStreaming time.Duration
}

// watchSlot is one look at the slot while it is not yet confirmed: it notes
// when the slot was first seen active and when confirmed says it is past
// the backlog.
func (d *drainTimes) watchSlot(ctx context.Context, conn *pgx.Conn, slot string, confirmed func(lsn uint64) bool, t0 time.Time) error {
	if d.toConfirmed != 0 {
		return nil
	}
	s, err := readSlot(ctx, conn, slot)
	if err != nil {
		return err
	}
	if s.active && d.toStreaming == 0 {
		d.toStreaming = time.Since(t0)
	}
	if confirmed(s.confirmed) {
		d.toConfirmed = time.Since(t0)
	}
	return nil
}

// watchDrain polls the topic's end offset and the slot's confirmed_flush_lsn
// until the topic holds n messages and confirmed says the slot is confirmed
// past the backlog.
func watchDrain(ctx context.Context, conn *pgx.Conn, admin *kafka.AdminClient, topic, slot string,
	n int, confirmed func(lsn uint64) bool, t0 time.Time, timeout time.Duration) (drainTimes, error) {
	var d drainTimes
	err := poll(ctx, timeout, 50*time.Millisecond, "the backlog to reach "+topic+" and be confirmed on "+slot, func() (bool, string, error) {
		if d.toKafka == 0 {
			end, err := topicEnd(admin, topic)
			if err != nil {
				return false, "", err
			}
			if end >= int64(n) {
				d.toKafka = time.Since(t0)
			}
		}
		if err := d.watchSlot(ctx, conn, slot, confirmed, t0); err != nil {
			return false, "", err
		}
		return d.toKafka > 0 && d.toConfirmed > 0, fmt.Sprintf("in Kafka after %s, confirmed after %s", d.toKafka, d.toConfirmed), nil
	})
	return d, err
}
