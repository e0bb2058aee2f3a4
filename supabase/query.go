package supabase

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Query selects rows of a table. The zero value selects every column of
// every visible row.
type Query struct {
	// Columns to return; empty means all ("*"). Plain column names only.
	Columns []string
	// Filters are ANDed.
	Filters []Filter
	// Order is applied in sequence.
	Order []Order
	// Limit caps the number of rows; 0 means no limit.
	Limit int
	// Offset skips rows; 0 means none.
	Offset int
	// Single expects exactly one row and decodes it as an object (PostgREST
	// Accept: application/vnd.pgrst.object+json). Zero rows give an error
	// matching ErrNotFound, more than one ErrNotSingular.
	Single bool
}

// Op is a PostgREST filter operator.
type Op string

// Filter operators (PostgREST docs: references/api/tables_views.rst,
// "Operators").
const (
	OpEq    Op = "eq"
	OpNeq   Op = "neq"
	OpGt    Op = "gt"
	OpGte   Op = "gte"
	OpLt    Op = "lt"
	OpLte   Op = "lte"
	OpLike  Op = "like"  // '*' may be used for '%'
	OpILike Op = "ilike" // '*' may be used for '%'
	OpIn    Op = "in"
	OpIs    Op = "is"
)

// Filter is one condition "column op value".
type Filter struct {
	Column string
	Op     Op
	// Value is the operand: a string, fmt.Stringer (uuid.UUID), integer,
	// float, bool or time.Time; for OpIn a []any (see In); for OpIs nil
	// (null), true, false or IsNotNull.
	Value any
}

// IsNotNull is the OpIs operand for "is not null".
const IsNotNull = isOperand("not_null")

type isOperand string

// Eq is column = value.
func Eq(column string, value any) Filter { return Filter{Column: column, Op: OpEq, Value: value} }

// Neq is column <> value.
func Neq(column string, value any) Filter { return Filter{Column: column, Op: OpNeq, Value: value} }

// Gt is column > value.
func Gt(column string, value any) Filter { return Filter{Column: column, Op: OpGt, Value: value} }

// Gte is column >= value.
func Gte(column string, value any) Filter { return Filter{Column: column, Op: OpGte, Value: value} }

// Lt is column < value.
func Lt(column string, value any) Filter { return Filter{Column: column, Op: OpLt, Value: value} }

// Lte is column <= value.
func Lte(column string, value any) Filter { return Filter{Column: column, Op: OpLte, Value: value} }

// Like is column LIKE pattern ('*' or '%' as wildcard).
func Like(column, pattern string) Filter { return Filter{Column: column, Op: OpLike, Value: pattern} }

// ILike is column ILIKE pattern ('*' or '%' as wildcard).
func ILike(column, pattern string) Filter {
	return Filter{Column: column, Op: OpILike, Value: pattern}
}

// In is column IN (values...). An empty list matches nothing.
func In[T any](column string, values ...T) Filter {
	vs := make([]any, len(values))
	for i, v := range values {
		vs[i] = v
	}
	return Filter{Column: column, Op: OpIn, Value: vs}
}

// Is is column IS value, for nil (null), true, false or IsNotNull.
func Is(column string, value any) Filter { return Filter{Column: column, Op: OpIs, Value: value} }

// Order sorts by one column.
type Order struct {
	Column string
	Desc   bool
	// Nulls is "" (PostgreSQL's default: last ascending, first descending),
	// NullsFirst or NullsLast.
	Nulls Nulls
}

// Nulls places NULLs in an Order.
type Nulls string

// Nulls placements.
const (
	NullsFirst Nulls = "nullsfirst"
	NullsLast  Nulls = "nullslast"
)

// Asc orders by column ascending.
func Asc(column string) Order { return Order{Column: column} }

// Desc orders by column descending.
func Desc(column string) Order { return Order{Column: column, Desc: true} }

// identRe is what a table or column name may look like: plain lowercase SQL
// identifiers, so nothing needs quoting in a URL and nothing can be injected
// into SQL.
var identRe = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// validIdent reports whether s is an acceptable table, column or function name.
func validIdent(s string) bool { return identRe.MatchString(s) }

// validate checks the query's identifiers and operators.
func (q *Query) validate(table string) error {
	if !validIdent(table) {
		return badRequest("PGRST100", fmt.Sprintf("invalid table name %q", table))
	}
	for _, c := range q.Columns {
		if c != "*" && !validIdent(c) {
			return badRequest("PGRST100", fmt.Sprintf("invalid column name %q", c))
		}
	}
	for _, f := range q.Filters {
		if !validIdent(f.Column) {
			return badRequest("PGRST100", fmt.Sprintf("invalid filter column %q", f.Column))
		}
		switch f.Op {
		case OpEq, OpNeq, OpGt, OpGte, OpLt, OpLte, OpLike, OpILike:
		case OpIn:
			if _, ok := f.Value.([]any); !ok {
				return badRequest("PGRST100", fmt.Sprintf("filter %s.in needs a list (use supabase.In)", f.Column))
			}
		case OpIs:
			if _, err := isKeyword(f.Value); err != nil {
				return err
			}
		default:
			return badRequest("PGRST100", fmt.Sprintf("unsupported filter operator %q", f.Op))
		}
	}
	for _, o := range q.Order {
		if !validIdent(o.Column) {
			return badRequest("PGRST100", fmt.Sprintf("invalid order column %q", o.Column))
		}
		if o.Nulls != "" && o.Nulls != NullsFirst && o.Nulls != NullsLast {
			return badRequest("PGRST100", fmt.Sprintf("invalid nulls placement %q", o.Nulls))
		}
	}
	if q.Limit < 0 || q.Offset < 0 {
		return badRequest("PGRST100", "limit and offset must not be negative")
	}
	return nil
}

// isKeyword returns the PostgREST keyword of an OpIs operand.
func isKeyword(v any) (string, error) {
	switch v {
	case nil:
		return "null", nil
	case true:
		return "true", nil
	case false:
		return "false", nil
	case IsNotNull:
		return "not_null", nil
	}
	return "", badRequest("PGRST100", fmt.Sprintf("is: unsupported operand %v", v))
}

// formatValue renders a filter operand the way PostgREST parses it: as the
// text form PostgreSQL accepts for the column's type.
func formatValue(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return x
	case []byte:
		return string(x)
	case bool:
		return strconv.FormatBool(x)
	case int:
		return strconv.Itoa(x)
	case int32:
		return strconv.FormatInt(int64(x), 10)
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case time.Time:
		return x.Format(time.RFC3339Nano)
	case fmt.Stringer:
		return x.String()
	}
	return fmt.Sprint(v)
}

// likePattern turns PostgREST's '*' wildcard into SQL's '%'.
func likePattern(s string) string { return strings.ReplaceAll(s, "*", "%") }
