package main

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// dlvLatency is the ack latency of a stream paced at a fixed rate: per
// batch, from the moment it was due to be handed to delivery to the arrival
// of the first DeliverResponse whose safe LSN covers its watermark.
type dlvLatency struct {
	Format        string  `json:"format"`
	Codec         string  `json:"codec"`
	Batches       int     `json:"batches"` // measured, after the warm-up
	RowsPerBatch  int     `json:"rows_per_batch"`
	RowsPerSecond float64 `json:"rows_per_second"` // achieved over the measured batches
	Seconds       float64 `json:"seconds"`
	P50Ms         float64 `json:"p50_ms"`
	P99Ms         float64 `json:"p99_ms"`
	MaxMs         float64 `json:"max_ms"`
	// MaxSendLagMs is how late the client handed a batch over at worst
	// (delivery not taking it in time shows here and in the latency).
	MaxSendLagMs float64 `json:"max_send_lag_ms"`
}

const pacedInterval = time.Second / pacedBatchesPerSecond

// latency sends the paced stream, one batch per tick. Latency is counted
// from when a batch was due, not from when it was sent, so that a delivery
// too slow to take batches in time cannot hide its delay in the client
// (coordinated omission). Batches of the warm-up are sent but not counted.
func (m *dlvMeasure) latency(ctx context.Context, format taskv1.DataFormat, codecName string) (dlvLatency, error) {
	l := dlvLatency{Format: formatName(format), Codec: codecName, RowsPerBatch: m.data.pacedRows}
	taskID, topic := m.names("lat", format, codecName)
	var p paced
	err := m.withTopics(ctx, func() error {
		var err error
		p, err = m.pace(ctx, startFor(taskID, topic, m.e.c.kafkaBootstrap, format, codecs[codecName]))
		return err
	}, topic)
	if err != nil {
		return l, err
	}
	warm := int(m.e.c.latencyWarmup / pacedInterval)
	lat, lag, sent := p.lat[warm:], p.lag[warm:], p.sent[warm:]
	l.Batches = len(lat)
	window := sent[len(sent)-1].Sub(sent[0]) + pacedInterval
	l.Seconds = window.Seconds()
	l.RowsPerSecond = float64(l.Batches*l.RowsPerBatch) / l.Seconds
	slices.Sort(lat)
	l.P50Ms, l.P99Ms, l.MaxMs = ms(percentile(lat, 0.50)), ms(percentile(lat, 0.99)), ms(lat[len(lat)-1])
	l.MaxSendLagMs = ms(slices.Max(lag))
	return l, nil
}

// paced is what pace records per batch.
type paced struct {
	lat  []time.Duration // from due to covered by a safe LSN
	lag  []time.Duration // from due to handed over
	sent []time.Time     // handed over
}

// pace runs the paced stream.
func (m *dlvMeasure) pace(ctx context.Context, start *deliveryv1.StartDelivery) (paced, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // also ends the receiver below if the wait times out
	s, err := openDeliver(ctx, m.conn, start)
	if err != nil {
		return paced{}, err
	}
	if err := s.send(m.data.warm); err != nil {
		return paced{}, err
	}
	if _, err := s.waitSafe(ctx, rowLSN(1), m.e.c.ferryTimeout); err != nil {
		return paced{}, fmt.Errorf("warm-up: %w", err)
	}
	wm := m.data.pacedWM
	p := paced{lat: make([]time.Duration, len(wm)), lag: make([]time.Duration, len(wm)), sent: make([]time.Time, len(wm))}
	t0 := time.Now().Add(pacedInterval)
	due := func(k int) time.Time { return t0.Add(time.Duration(k) * pacedInterval) }
	covered := make(chan error, 1)
	go func() {
		next := 0
		for a := range s.acks {
			for ; next < len(wm) && wm[next] <= a.safe; next++ {
				p.lat[next] = a.at.Sub(due(next))
			}
			if next == len(wm) {
				covered <- nil
				return
			}
		}
		covered <- s.endError(fmt.Sprintf("with %d of %d paced batches acknowledged", next, len(wm)))
	}()
	for k, f := range m.data.paced {
		time.Sleep(time.Until(due(k)))
		p.sent[k] = time.Now()
		p.lag[k] = p.sent[k].Sub(due(k))
		if err := s.send(f); err != nil {
			return paced{}, err
		}
	}
	select {
	case err := <-covered:
		if err != nil {
			return paced{}, err
		}
	case <-time.After(m.e.c.ferryTimeout):
		return paced{}, fmt.Errorf("the paced batches were not all acknowledged %s after the last was sent", m.e.c.ferryTimeout)
	}
	final, err := s.finish()
	if err != nil {
		return paced{}, err
	}
	if want := uint64(1 + len(wm)*m.data.pacedRows); final.acked != want {
		return paced{}, fmt.Errorf("delivery acknowledged %d messages, want %d", final.acked, want)
	}
	return p, nil
}

// percentile is the nearest-rank percentile of sorted durations.
func percentile(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
