package server

import (
	"context"
	"log/slog"

	xslog "golang.org/x/exp/slog"
)

// tusLogger adapts a log/slog handler to the golang.org/x/exp/slog logger
// tusd v2 takes (a distinct type in the x/exp version tusd pins), lowering
// tusd's chatty per-request Info logs to Debug on the way; its warnings and
// errors keep their level.
func tusLogger(h slog.Handler) *xslog.Logger {
	return xslog.New(bridge{h})
}

type bridge struct{ h slog.Handler }

func level(l xslog.Level) slog.Level {
	if l == xslog.LevelInfo {
		return slog.LevelDebug
	}
	return slog.Level(l)
}

func (b bridge) Enabled(ctx context.Context, l xslog.Level) bool {
	return b.h.Enabled(ctx, level(l))
}

func (b bridge) Handle(ctx context.Context, r xslog.Record) error {
	out := slog.NewRecord(r.Time, level(r.Level), r.Message, r.PC)
	r.Attrs(func(a xslog.Attr) bool {
		out.AddAttrs(attr(a))
		return true
	})
	return b.h.Handle(ctx, out)
}

func (b bridge) WithAttrs(as []xslog.Attr) xslog.Handler {
	conv := make([]slog.Attr, len(as))
	for i, a := range as {
		conv[i] = attr(a)
	}
	return bridge{b.h.WithAttrs(conv)}
}

func (b bridge) WithGroup(name string) xslog.Handler { return bridge{b.h.WithGroup(name)} }

func attr(a xslog.Attr) slog.Attr {
	v := a.Value.Resolve()
	if v.Kind() == xslog.KindGroup {
		group := v.Group()
		conv := make([]any, len(group))
		for i, g := range group {
			conv[i] = attr(g)
		}
		return slog.Group(a.Key, conv...)
	}
	return slog.Any(a.Key, v.Any())
}
