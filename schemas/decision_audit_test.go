package schemas_test

import (
	"testing"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/congrad-beam/congrad/schemas"
	"github.com/congrad-beam/congrad/schemas/schematest"
)

// Decisions with the audit columns round-trip; files without them (the
// default layout, and every file written before the columns) still read,
// with any codec; the default layout is unchanged.
func TestDecisionAuditColumns(t *testing.T) {
	rows := schematest.Decisions(20)
	for i := range rows {
		rows[i].ScoreType, rows[i].Target, rows[i].Rule, rows[i].Gate = "group:16", "g*_{-l}", "noise-aware tau_l=-0.02", "leave-out open"
	}
	rec := roundTrip(t, schemas.DecisionCodec{Audit: true}, rows)
	// A reader without Audit reads the audit columns too.
	got, err := schemas.DecisionCodec{}.Decode(rec)
	if err != nil || got[3].Target != "g*_{-l}" || got[3].Gate != "leave-out open" {
		t.Fatalf("plain codec on an audited file: %v %+v", err, got[3])
	}
	// The default layout: six columns, no audit; an audited reader refuses it
	// (it names the missing columns), the plain one reads it.
	if n := len(schemas.DecisionCodec{}.Schema().Fields()); n != 6 {
		t.Fatalf("default decision layout has %d columns, want 6", n)
	}
	b := array.NewRecordBuilder(memory.DefaultAllocator, schemas.DecisionCodec{}.Schema())
	defer b.Release()
	plain := schematest.Decisions(5)
	if err := (schemas.DecisionCodec{}).Append(b, plain); err != nil {
		t.Fatal(err)
	}
	old := b.NewRecordBatch()
	if ds, err := (schemas.DecisionCodec{}).Decode(old); err != nil || ds[0].Target != "" || ds[0].PairID != plain[0].PairID {
		t.Fatalf("default layout: %v %+v", err, ds)
	}
	if err := (schemas.DecisionCodec{Audit: true}).Check(old.Schema()); err == nil {
		t.Fatal("audited check accepted a file without the audit columns")
	}
}
