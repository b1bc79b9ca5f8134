# same shape, one key byte changed: the checksum no longer holds (reported at low confidence)
./xmrig -o pool.example.invalid:3333 -u 42EYJJ3y86oJjeVdEmF9NSBnzPFiYssr2FhEM26PMfcz7FA6xjDdCZecXdbkz5r7p98mB3ueDsf5uYJ5vdUwqcXNBxbscY6
