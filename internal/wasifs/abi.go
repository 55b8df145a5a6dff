package wasifs

// WASI preview1 ABI numbers (wasi_snapshot_preview1 witx): errnos, rights,
// flags and the layouts the host functions read and write.

// Errno is a WASI errno.
type Errno uint16

// WASI errnos this package returns.
const (
	errnoSuccess     Errno = 0
	errno2big        Errno = 1
	errnoAcces       Errno = 2
	errnoAgain       Errno = 6
	errnoBadf        Errno = 8
	errnoBusy        Errno = 10
	errnoExist       Errno = 20
	errnoFault       Errno = 21
	errnoFbig        Errno = 22
	errnoIlseq       Errno = 25
	errnoIntr        Errno = 27
	errnoInval       Errno = 28
	errnoIO          Errno = 29
	errnoIsdir       Errno = 31
	errnoLoop        Errno = 32
	errnoMfile       Errno = 33
	errnoMlink       Errno = 34
	errnoNametoolong Errno = 37
	errnoNfile       Errno = 41
	errnoNodev       Errno = 43
	errnoNoent       Errno = 44
	errnoNomem       Errno = 48
	errnoNospc       Errno = 51
	errnoNosys       Errno = 52
	errnoNotdir      Errno = 54
	errnoNotempty    Errno = 55
	errnoNotsock     Errno = 57
	errnoNotsup      Errno = 58
	errnoNotty       Errno = 59
	errnoNxio        Errno = 60
	errnoOverflow    Errno = 61
	errnoPerm        Errno = 63
	errnoPipe        Errno = 64
	errnoRange       Errno = 68
	errnoRofs        Errno = 69
	errnoSpipe       Errno = 70
	errnoTxtbsy      Errno = 74
	errnoXdev        Errno = 75
	errnoNotcapable  Errno = 76
)

// Rights.
const (
	rightFdDatasync           uint64 = 1 << 0
	rightFdRead               uint64 = 1 << 1
	rightFdSeek               uint64 = 1 << 2
	rightFdFdstatSetFlags     uint64 = 1 << 3
	rightFdSync               uint64 = 1 << 4
	rightFdTell               uint64 = 1 << 5
	rightFdWrite              uint64 = 1 << 6
	rightFdAdvise             uint64 = 1 << 7
	rightFdAllocate           uint64 = 1 << 8
	rightPathCreateDirectory  uint64 = 1 << 9
	rightPathCreateFile       uint64 = 1 << 10
	rightPathLinkSource       uint64 = 1 << 11
	rightPathLinkTarget       uint64 = 1 << 12
	rightPathOpen             uint64 = 1 << 13
	rightFdReaddir            uint64 = 1 << 14
	rightPathReadlink         uint64 = 1 << 15
	rightPathRenameSource     uint64 = 1 << 16
	rightPathRenameTarget     uint64 = 1 << 17
	rightPathFilestatGet      uint64 = 1 << 18
	rightPathFilestatSetSize  uint64 = 1 << 19
	rightPathFilestatSetTimes uint64 = 1 << 20
	rightFdFilestatGet        uint64 = 1 << 21
	rightFdFilestatSetSize    uint64 = 1 << 22
	rightFdFilestatSetTimes   uint64 = 1 << 23
	rightPathSymlink          uint64 = 1 << 24
	rightPathRemoveDirectory  uint64 = 1 << 25
	rightPathUnlinkFile       uint64 = 1 << 26
	rightPollFdReadwrite      uint64 = 1 << 27
	rightSockShutdown         uint64 = 1 << 28
	rightSockAccept           uint64 = 1 << 29
)

// Rights by kind of descriptor. A descriptor never holds a right its kind
// cannot use (a directory has no fd_seek, wasi-testsuite's directory_seek).
const (
	fileRights = rightFdDatasync | rightFdRead | rightFdSeek | rightFdFdstatSetFlags | rightFdSync |
		rightFdTell | rightFdWrite | rightFdAdvise | rightFdAllocate | rightFdFilestatGet |
		rightFdFilestatSetSize | rightFdFilestatSetTimes | rightPollFdReadwrite

	dirRights = rightPathCreateDirectory | rightPathCreateFile | rightPathLinkSource | rightPathLinkTarget |
		rightPathOpen | rightFdReaddir | rightPathReadlink | rightPathRenameSource | rightPathRenameTarget |
		rightPathFilestatGet | rightPathFilestatSetSize | rightPathFilestatSetTimes | rightFdFilestatGet |
		rightFdFilestatSetTimes | rightPathSymlink | rightPathRemoveDirectory | rightPathUnlinkFile |
		rightFdFdstatSetFlags | rightFdSync | rightFdDatasync

	// Rights that change what is under a directory or in a file: under a
	// read-only mount, a call that needs one fails with EROFS.
	writeRights = rightFdWrite | rightFdAllocate | rightFdFilestatSetSize |
		rightFdFilestatSetTimes | rightPathCreateDirectory | rightPathCreateFile | rightPathLinkTarget |
		rightPathRenameSource | rightPathRenameTarget | rightPathFilestatSetSize | rightPathFilestatSetTimes |
		rightPathSymlink | rightPathRemoveDirectory | rightPathUnlinkFile

	// Rights that make path_open open a file for writing. (wasi-libc asks
	// for fd_datasync with O_WRONLY too, but a directory holds it.)
	openWriteRights = rightFdWrite | rightFdAllocate | rightFdFilestatSetSize

	stdinRights  = rightFdRead | rightFdSeek | rightFdTell | rightFdFdstatSetFlags | rightFdFilestatGet | rightPollFdReadwrite
	stdoutRights = rightFdWrite | rightFdSeek | rightFdTell | rightFdFdstatSetFlags | rightFdFilestatGet |
		rightPollFdReadwrite | rightFdSync | rightFdDatasync
)

// File types.
const (
	filetypeUnknown         uint8 = 0
	filetypeBlockDevice     uint8 = 1
	filetypeCharacterDevice uint8 = 2
	filetypeDirectory       uint8 = 3
	filetypeRegularFile     uint8 = 4
	filetypeSocketDgram     uint8 = 5
	filetypeSocketStream    uint8 = 6
	filetypeSymbolicLink    uint8 = 7
)

// fdflags.
const (
	fdflagAppend   uint16 = 1 << 0
	fdflagDsync    uint16 = 1 << 1
	fdflagNonblock uint16 = 1 << 2
	fdflagRsync    uint16 = 1 << 3
	fdflagSync     uint16 = 1 << 4
)

// oflags.
const (
	oflagCreat     uint16 = 1 << 0
	oflagDirectory uint16 = 1 << 1
	oflagExcl      uint16 = 1 << 2
	oflagTrunc     uint16 = 1 << 3
)

// lookupflags.
const lookupSymlinkFollow uint32 = 1

// fstflags.
const (
	fstAtim    uint16 = 1 << 0
	fstAtimNow uint16 = 1 << 1
	fstMtim    uint16 = 1 << 2
	fstMtimNow uint16 = 1 << 3
)

// whence.
const (
	whenceSet = 0
	whenceCur = 1
	whenceEnd = 2
)

// Event types of poll_oneoff.
const (
	eventTypeClock   = 0
	eventTypeFdRead  = 1
	eventTypeFdWrite = 2
)

// Clock ids and subscription flags of poll_oneoff.
const (
	clockRealtime   = 0
	clockMonotonic  = 1
	subClockAbstime = 1
)

// Layout sizes.
const (
	sizeFdstat   = 24
	sizeFilestat = 64
	sizeDirent   = 24
	sizePrestat  = 8
	sizeIovec    = 8
	sizeSub      = 48
	sizeEvent    = 32

	sizeFilestatUnstable = 56 // wasi_unstable: nlink is a u32
	sizeSubUnstable      = 56 // wasi_unstable: a clock has an identifier
)
