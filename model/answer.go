package model

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"

	"github.com/go-json-experiment/json/jsontext"
)

// errTextAfter is an answer with more than one JSON value, or anything but
// whitespace after its value.
var errTextAfter = errors.New("text after the JSON value")

// answerDecoders are jsontext decoders kept for the next answer.
var answerDecoders = sync.Pool{New: func() any { return jsontext.NewDecoder(strings.NewReader("")) }} //nolint:gochecknoglobals // a pool

// answerOptions are encoding/json's semantics for a decoded value: the last
// of a repeated name wins, and invalid UTF-8 becomes U+FFFD.
var answerOptions = []jsontext.Options{jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true)} //nolint:gochecknoglobals // constant options

// decodeAnswer decodes a model's answer as json.Decoder with UseNumber
// decodes one value into an any (objects as map[string]any, arrays as
// []any, numbers as json.Number), and refuses it when anything but
// whitespace follows the value (errTextAfter). Every answer is decoded for
// its validation, and json.Decoder cost 1.8 µs for the noop answer and 13.8
// µs for the tests' quiz answer, against 0.7 and 9.0 here (BenchmarkFinish;
// FuzzDecodeAnswerMatchesEncodingJSON holds them to the same values).
func decodeAnswer(body string) (any, error) {
	d, _ := answerDecoders.Get().(*jsontext.Decoder)
	d.Reset(strings.NewReader(body), answerOptions...)
	defer func() {
		d.Reset(strings.NewReader(""), answerOptions...) // the pool keeps no answer
		answerDecoders.Put(d)
	}()
	v, err := answerValue(d)
	if err != nil {
		return nil, err
	}
	if strings.TrimLeft(body[d.InputOffset():], " \t\r\n") != "" {
		return nil, errTextAfter
	}
	return v, nil
}

// answerValue reads the next value of d.
func answerValue(d *jsontext.Decoder) (any, error) {
	t, err := d.ReadToken()
	if err != nil {
		return nil, err
	}
	switch t.Kind() {
	case '{':
		m := map[string]any{}
		for d.PeekKind() != '}' {
			k, err := d.ReadToken()
			if err != nil {
				return nil, err
			}
			name := k.String() // before the next read voids k
			v, err := answerValue(d)
			if err != nil {
				return nil, err
			}
			m[name] = v
		}
		if _, err := d.ReadToken(); err != nil {
			return nil, err
		}
		return m, nil
	case '[':
		a := []any{}
		for d.PeekKind() != ']' {
			v, err := answerValue(d)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
		if _, err := d.ReadToken(); err != nil {
			return nil, err
		}
		return a, nil
	case '"':
		return t.String(), nil
	case '0':
		return json.Number(t.String()), nil
	case 't':
		return true, nil
	case 'f':
		return false, nil
	default: // 'n'
		return nil, nil //nolint:nilnil // JSON null
	}
}
