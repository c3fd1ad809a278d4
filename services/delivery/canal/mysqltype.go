package canal

import (
	"strconv"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	"github.com/ferry-cdc/ferry/services/delivery/relation"
)

// MySQLType is the MySQL type name written in mysqlType under
// Options.MySQLTypeNames, for readers that infer column types from MySQL's
// names (Apache Paimon's Kafka CDC canal parser). It keeps every value
// readable: a type MySQL has no equivalent for is longtext, which such
// readers take as a string, and a numeric without a precision is
// decimal(65,30), wider than any engine's fixed decimal, so that it is read
// as a string rather than rounded. A domain maps as its base type (without
// the base's modifier, which the column does not carry). The README has the
// table.
func MySQLType(col *cdcv1.Column) string {
	switch col.GetBaseTypeKind() {
	case cdcv1.TypeKind_TYPE_KIND_ARRAY, cdcv1.TypeKind_TYPE_KIND_COMPOSITE, cdcv1.TypeKind_TYPE_KIND_ENUM,
		cdcv1.TypeKind_TYPE_KIND_RANGE, cdcv1.TypeKind_TYPE_KIND_MULTIRANGE:
		return "longtext"
	}
	mod := col.GetTypeModifier()
	if col.GetBaseTypeOid() != 0 && col.GetBaseTypeOid() != col.GetTypeOid() {
		mod = -1 // a domain's column modifier is not its base type's
	}
	switch relation.ValueOID(col) {
	case 16:
		return "boolean"
	case 21:
		return "smallint"
	case 23:
		return "int"
	case 20:
		return "bigint"
	case 26:
		return "bigint" // oid: unsigned 32-bit
	case 700:
		return "float"
	case 701:
		return "double"
	case 1700:
		return numericType(mod)
	case 1042:
		return sized("char", mod-4, 255)
	case 1043:
		return sized("varchar", mod-4, 65535)
	case 18:
		return "char(1)"
	case 19:
		return "varchar(63)"
	case 1082:
		return "date"
	case 1083:
		return precise("time", mod)
	case 1114:
		return precise("datetime", mod)
	case 1184:
		return precise("timestamp", mod)
	case 17:
		return "longblob"
	case 114, 3802:
		return "json"
	case 2950:
		return "char(36)"
	}
	return "longtext"
}

// numericType: numeric(p,s) is decimal(p,s); without a precision,
// decimal(65,30).
func numericType(mod int32) string {
	if mod < 4 {
		return "decimal(65,30)"
	}
	m := mod - 4
	p, s := (m>>16)&0xffff, m&0xffff
	if s > 0x7ff { // PostgreSQL 15's negative scale: no MySQL equivalent
		return "decimal(65,30)"
	}
	return "decimal(" + strconv.Itoa(int(p)) + "," + strconv.Itoa(int(s)) + ")"
}

// sized is name(n) for a length up to limit, else longtext.
func sized(name string, n, limit int32) string {
	if n <= 0 || n > limit {
		return "longtext"
	}
	return name + "(" + strconv.Itoa(int(n)) + ")"
}

// precise is name(p); PostgreSQL's default precision is microseconds, as
// MySQL's (6) is.
func precise(name string, mod int32) string {
	p := mod
	if p < 0 || p > 6 {
		p = 6
	}
	return name + "(" + strconv.Itoa(int(p)) + ")"
}
