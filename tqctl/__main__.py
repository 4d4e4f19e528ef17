import os

from tqctl.worker_process import SPEC_ENV

if os.environ.get(SPEC_ENV):  # ``tqctl worker`` exec'd into the lean worker process
    from tqctl.worker_process import main as worker_main

    worker_main()
else:
    from tqctl.cli import main

    main()
