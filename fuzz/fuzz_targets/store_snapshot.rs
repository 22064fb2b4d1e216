//! Any bytes handed to `Store::restore` give an error or a store that saves back to itself.
#![no_main]

use etcd::store::Store;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(store) = Store::restore(data) {
        let saved = store.save();
        let again = Store::restore(&saved).expect("a saved store restores");
        assert!(again.save() == saved, "restore(save(s)) differs from s");
    }
});
