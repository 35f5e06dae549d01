//! The native engine's LSTM language models against candle's model, and an LSTM
//! population against its members alone.

mod common;

use beatmatch_tasks::models::lstm::LstmConfig;
use beatmatch_tasks::models::ModelConfig;
use beatmatch_tasks::population::Members;
use beatmatch_tasks::{DatasetName, Problem};
use common::{gradients_equal_candles, members_equal_alone_and_among_3_and_30, population, windows, Case};

/// The engine's loss and every gradient against candle's autograd on the same values: one and
/// two layers, windows of one token (no recurrence) and of several, a batch of one, tokens
/// that repeat within a window (tolerances: [`gradients_equal_candles`]).
#[test]
fn lstm_gradients_equal_candles_backward() {
    // (vocabulary, hidden, layers, windows, tokens per window)
    let cases = [(6, 3, 1, 2, 4), (6, 4, 2, 2, 4), (7, 5, 1, 3, 1), (5, 4, 2, 1, 6), (9, 8, 1, 4, 3)];
    for (vocab, hidden, layers, rows, t) in cases {
        let config = ModelConfig::Lstm(LstmConfig { hidden, layers, context: t });
        let what = format!("{} (vocabulary {vocab}), {rows} windows", config.id());
        let (x, y) = windows(vocab, rows, t);
        gradients_equal_candles(&Case { config, shape: &[1], classes: vocab, x: &x, y: &y, rows, seed: 2, nudge: (0.1, 1.3) }, &what);
    }
}

fn problem() -> Problem {
    Problem::new(ModelConfig::Lstm(LstmConfig { hidden: 8, layers: 2, context: 6 }), DatasetName::MobyDick, 4, &[15, 30])
}

/// An LSTM member's record (held-out next-byte loss included) is the same bytes alone, among
/// 3 and among 30, diverging members among them; a population resumed from a snapshot is one
/// uninterrupted run.
#[test]
fn an_lstm_member_gives_the_same_bytes_in_populations_of_1_3_and_30() {
    let p = problem();
    let data = p.dataset.load().unwrap();
    members_equal_alone_and_among_3_and_30(&p, &data, 7, (30, 15), 1000.0, &[0, 4, 9, 17, 20, 29]);
    // Members 4 and 17 of those thirty.
    let sgdm = format!("sgdm:lr={}", 3e-3 * 1000.0);
    let members = [("adam:lr=0.01", 30), (sgdm.as_str(), 15)];
    let whole = population(&p, &data, 7, &members).finish().unwrap();
    let mut pop = population(&p, &data, 7, &members);
    pop.advance(8).unwrap();
    let snap = pop.snapshot();
    pop.advance(5).unwrap();
    pop.restore(&snap).unwrap();
    assert_eq!(pop.finish().unwrap(), whole);
}
