package capture

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Ownership. A task's slot and publication share one name, derived from the
// task's ID. A name alone cannot tell Ferry's objects from a person's, nor
// this task's from those an earlier task of the same ID left behind, and
// adopting one would stream from a position nobody chose while dropping one
// could stop another's replication. So a task with an owner token
// (TaskState.replication_owner) records it in the comment of the
// publication it creates, in the transaction that creates it, and marks the
// slot as its own there before creating the slot. Ferry then adopts, alters
// and drops only what that comment gives to the owner asking. PostgreSQL
// keeps no comments on slots; the publication's, which only its owner or a
// superuser may change, speaks for both.

// claim is what a publication's comment says.
type claim struct {
	owner string // empty: no Ferry comment
	slot  bool   // the slot of the same name is the owner's
}

var claimPattern = regexp.MustCompile(`^Ferry replication of owner ([A-Za-z0-9-]{1,64}) \(slot (claimed|not claimed)\)`)

func (c claim) text() string {
	slot := "not claimed"
	if c.slot {
		slot = "claimed"
	}
	return fmt.Sprintf("Ferry replication of owner %s (slot %s). Ferry drops this publication and its slot when the task is released.", c.owner, slot)
}

func parseClaim(comment string) claim {
	m := claimPattern.FindStringSubmatch(comment)
	if m == nil {
		return claim{}
	}
	return claim{owner: m[1], slot: m[2] == "claimed"}
}

var errNoPublication = errors.New("publication does not exist")

// readClaim reads the publication's claim.
func readClaim(ctx context.Context, conn *pgx.Conn, pub string) (claim, error) {
	var comment *string
	err := conn.QueryRow(ctx, `SELECT obj_description(oid, 'pg_publication') FROM pg_publication WHERE pubname = $1`, pub).Scan(&comment)
	if errors.Is(err, pgx.ErrNoRows) {
		return claim{}, fmt.Errorf("publication %s: %w", pgx.Identifier{pub}.Sanitize(), errNoPublication)
	}
	if err != nil {
		return claim{}, fmt.Errorf("reading the comment of publication %s: %w", pgx.Identifier{pub}.Sanitize(), err)
	}
	if comment == nil {
		return claim{}, nil
	}
	return parseClaim(*comment), nil
}

// execer is a connection or a transaction.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// writeClaim comments the publication; the owner token's alphabet needs no
// quoting beyond the literal's.
func writeClaim(ctx context.Context, db execer, pub string, c claim) error {
	if !claimPattern.MatchString(c.text()) {
		return fmt.Errorf("owner token %q is not 1-64 letters, digits and hyphens", c.owner)
	}
	if _, err := db.Exec(ctx, fmt.Sprintf("COMMENT ON PUBLICATION %s IS '%s'", pgx.Identifier{pub}.Sanitize(), c.text())); err != nil {
		return fmt.Errorf("recording Ferry's ownership on publication %s: %w", pgx.Identifier{pub}.Sanitize(), err)
	}
	return nil
}

// ownPublication refuses a publication whose comment does not give it to
// owner.
func ownPublication(ctx context.Context, conn *pgx.Conn, pub, owner string) (claim, error) {
	c, err := readClaim(ctx, conn, pub)
	if err != nil {
		return c, err
	}
	if c.owner != owner {
		return c, failedPrecondition("publication %s exists but was not created by this task (%s); Ferry does not take over a publication it did not create: drop it (DROP PUBLICATION %s) if nothing uses it, or create the task under another ID",
			pgx.Identifier{pub}.Sanitize(), describeClaim(c, owner), pgx.Identifier{pub}.Sanitize())
	}
	return c, nil
}

// claimSlot marks the slot as owner's before it is created, so that a
// retry after a crash between the two adopts it.
func claimSlot(ctx context.Context, conn *pgx.Conn, pub, owner string) error {
	c, err := ownPublication(ctx, conn, pub, owner)
	if err != nil || c.slot {
		return err
	}
	return writeClaim(ctx, conn, pub, claim{owner: owner, slot: true})
}

// ownSlot refuses an existing slot the publication's comment does not
// give to owner.
func ownSlot(ctx context.Context, conn *pgx.Conn, slot, pub, owner string) error {
	c, err := readClaim(ctx, conn, pub)
	if err != nil && !errors.Is(err, errNoPublication) {
		return err
	}
	if c.owner == owner && c.slot {
		return nil
	}
	return failedPrecondition("replication slot %s exists but was not created by this task (publication %s: %s); Ferry does not adopt a slot it did not create, which would stream from a position nobody chose: drop it (SELECT pg_drop_replication_slot('%s')) if nothing uses it, or create the task under another ID",
		slot, pgx.Identifier{pub}.Sanitize(), describeClaim(c, owner), slot)
}

func describeClaim(c claim, owner string) string {
	switch {
	case c.owner == "":
		return "no Ferry ownership recorded"
	case c.owner != owner:
		return "owned by another Ferry task"
	case !c.slot:
		return "this task's, but its slot was never claimed"
	}
	return "this task's"
}

// createOwnedPublication creates the publication and, with an owner, its
// claim in the same transaction: no crash leaves a Ferry publication that
// no owner can prove its own.
func createOwnedPublication(ctx context.Context, conn *pgx.Conn, pub, create, owner string) error {
	if owner == "" {
		_, err := conn.Exec(ctx, create)
		return err
	}
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, create); err != nil {
			return err
		}
		return writeClaim(ctx, tx, pub, claim{owner: owner})
	})
}
