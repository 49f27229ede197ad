import t from 'tap';

import { parseSize, formatSize } from '../src/size.js';
import { isValidName, parseSnapshotName } from '../src/volumes/names.js';
import { CowvolError } from '../src/errors.js';

t.test('sizes parse in binary units', async (t) => {
  t.equal(parseSize('4096'), 4096);
  t.equal(parseSize('64K'), 65536);
  t.equal(parseSize('64KiB'), 65536);
  t.equal(parseSize('10G'), 10 * 2 ** 30);
  t.equal(parseSize('2TiB'), 2 * 2 ** 40);
  for (const bad of ['', 'G', '1.5G', '-1', '10GB', '10 Gi', '1e9', '10g']) {
    t.throws(() => parseSize(bad), CowvolError, `rejects '${bad}'`);
  }
  t.equal(formatSize(65536), '64 KiB');
  t.equal(formatSize(1536), '1.5 KiB');
});

t.test('names follow [a-z0-9][a-z0-9._-]{0,127}', async (t) => {
  t.ok(isValidName('a'));
  t.ok(isValidName('pvc-1234.data_x'));
  t.ok(isValidName('a'.repeat(128)));
  t.notOk(isValidName('a'.repeat(129)));
  t.notOk(isValidName('-a'));
  t.notOk(isValidName('A'));
  t.notOk(isValidName('a/b'));
  t.notOk(isValidName(''));
  t.same(parseSnapshotName('vol@snap'), { volume: 'vol', snapshot: 'snap' });
  t.throws(() => parseSnapshotName('vol'), CowvolError);
  t.throws(() => parseSnapshotName('vol@'), CowvolError);
  t.throws(() => parseSnapshotName('vol@a@b'), CowvolError);
});
