//! A learned update split over threads gives the same bits as one thread.

use beatmatch_core::{Bound, ParamInfo};
use beatmatch_learned::checkpoint;
use beatmatch_learned::small_fc::{SmallFcConfig, SmallFcNet};
use beatmatch_learned::velo::{VeloConfig, VeloNet};
use beatmatch_testkit::{fixtures_dir, synthetic_trajectory};
use std::sync::Arc;

#[test]
fn two_and_three_threads_give_the_bits_of_one() {
    let dir = fixtures_dir();
    // A tensor above the threading threshold with a length that is not a multiple of the
    // block, and a small one below it.
    let infos = [ParamInfo::new("b", vec![256]), ParamInfo::new("w", vec![301, 257])];
    let small = checkpoint::load(&dir.join("adafac_case1.theta.msgpack"), None).unwrap();
    let velo = checkpoint::load(&dir.join("velo_case1.theta.msgpack"), None).unwrap();
    let sf = |threads| SmallFcNet::bind(&small.theta, SmallFcConfig::default()).unwrap().with_threads(threads);
    let vn = |threads| VeloNet::bind(&velo.theta, VeloConfig::default()).unwrap().with_threads(threads);
    let one = synthetic_trajectory(&mut Bound::new(Arc::new(sf(1)), &infos), &infos);
    for threads in [2, 3] {
        assert_eq!(synthetic_trajectory(&mut Bound::new(Arc::new(sf(threads)), &infos), &infos), one, "small_fc on {threads} threads");
    }
    let one = synthetic_trajectory(&mut Bound::new(Arc::new(vn(1)), &infos), &infos);
    for threads in [2, 3] {
        assert_eq!(synthetic_trajectory(&mut Bound::new(Arc::new(vn(threads)), &infos), &infos), one, "VeLO on {threads} threads");
    }
}
